"""How many threads an inference process should use: the idle cores, not all of them.

oneDNN and OpenMP split each operation across their threads and wait for the slowest. When another
process holds one of the cores, the thread scheduled there finishes late and every operation waits for
it: on a 2-core machine a run then takes ~10x longer instead of ~2x. Asking only for the cores that are
idle now (sampled from ``/proc/stat``) keeps the threads from waiting on each other.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

SAMPLE_S = 0.2  # how long the CPU counters are sampled
IDLE_SHARE = 0.5  # a core idle at least this share of the sample counts as idle


def usable_cores() -> list[int]:
    """The cores this process may run on (its affinity mask; all of them where there is none)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def _cpu_times() -> dict[int, tuple[int, int]]:
    """(idle, total) jiffies per core from /proc/stat."""
    times = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name != "cpu":
            values = [int(v) for v in fields[:8]]
            times[int(name[3:])] = (values[3] + values[4], sum(values))  # idle + iowait, all
    return times


def idle_cores(sample_s: float = SAMPLE_S) -> int | None:
    """How many of the usable cores were idle over ``sample_s`` seconds (None where /proc/stat is absent)."""
    try:
        before = _cpu_times()
        time.sleep(sample_s)
        after = _cpu_times()
    except (OSError, ValueError):
        return None
    idle = 0
    for core in usable_cores():
        if core in before and core in after:
            total = after[core][1] - before[core][1]
            idle += total > 0 and (after[core][0] - before[core][0]) / total >= IDLE_SHARE
    return idle


def choose_threads(requested: int | None = None) -> int:
    """``requested`` if given, else the idle cores (at least 1), else torch's default."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"threads must be at least 1, got {requested}")
        return requested
    idle = idle_cores()
    return max(1, min(idle, len(usable_cores()))) if idle is not None else torch.get_num_threads()


def set_threads(requested: int | None = None) -> int:
    """Set torch's intra-op threads to :func:`choose_threads` and return the number."""
    threads = choose_threads(requested)
    torch.set_num_threads(threads)
    return threads
