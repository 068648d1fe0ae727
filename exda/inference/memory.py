"""Bounded memory for inference: estimate a whole-image pass and tile when it would not fit.

Restormer-style U-Nets keep a handful of full-resolution feature maps alive at once (the skip, the
attention's q/k/v, the FFN's 2 x 2.66 C hidden map), so peak memory grows with pixels x width. The
coefficient below was measured on this project's networks (peak RSS growth of one inference pass,
``benchmarks/results/speed_cpu.json``: full-size exda_restormer at 512 px, +1793 MiB fp32 eager, +1092 MiB
on the bf16 fast path): about 150 bytes per pixel per channel of the first level in fp32, about 90 in
bf16. The estimate takes 160, so it errs towards tiling.
"""

from __future__ import annotations

import math
from pathlib import Path

from torch import nn

BYTES_PER_PIXEL_PER_CHANNEL = 160
DEFAULT_CAP = 2 * 2**30  # activations budget cap when --max-memory is not given (2 GiB)
TILE_MULTIPLE = 64


def first_width(model: nn.Module) -> int:
    """Channels of the network's first convolution (the full-resolution feature width)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.out_channels
    return 64


def estimate_peak_bytes(channels: int, height: int, width: int) -> int:
    """Estimated extra memory of one whole-image pass at ``height`` x ``width`` of a network whose
    full-resolution features have ``channels`` channels (:func:`first_width`)."""
    return BYTES_PER_PIXEL_PER_CHANNEL * channels * height * width


def available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else None."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def default_budget() -> int:
    """A safe share of this machine: a quarter of the available memory, at most DEFAULT_CAP."""
    available = available_bytes()
    return DEFAULT_CAP if available is None else min(DEFAULT_CAP, available // 4)


def parse_size(text: str) -> int:
    """'3G', '512M', '2.5GiB' or a plain number of bytes -> bytes; ValueError on anything else."""
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    cleaned = text.strip().upper().removesuffix("IB").removesuffix("B")
    number, unit = (cleaned[:-1], cleaned[-1]) if cleaned and cleaned[-1] in units else (cleaned, "")
    value = float(number) * units[unit]
    if not (math.isfinite(value) and value >= 1):
        raise ValueError(f"memory size must be a positive number of bytes, got {text!r}")
    return int(value)


def format_size(size: float) -> str:
    """Bytes for people: '1.5 GiB' from 1 GiB up, else '12.3 MiB'."""
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


def tile_for_budget(channels: int, height: int, width: int, budget: int) -> int | None:
    """None when the whole image fits ``budget`` (or no allowed tile is smaller than the image); else the
    largest square tile (a multiple of 64, at least 128) whose pass fits it."""
    if estimate_peak_bytes(channels, height, width) <= budget:
        return None
    per_pixel = estimate_peak_bytes(channels, 1, 1)
    side = max(2 * TILE_MULTIPLE, int((budget / per_pixel) ** 0.5) // TILE_MULTIPLE * TILE_MULTIPLE)
    return side if side < max(height, width) else None
