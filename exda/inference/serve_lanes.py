"""Where ``exda serve`` runs its restorations: two lanes, so that a large image does not hold small ones
hostage, and jobs that really stop when cancelled or over their time limit.

Lanes: each is one worker thread with a first-come queue; images up to ``FAST_LANE_PIXELS`` go to the fast
lane, larger ones to the slow lane, whose queue is bounded (``SLOW_LANE_WAITING``; one more is refused
with a message). The lanes share the torch threads: a job uses all of them while the other lane is idle
and half of them while both run, re-read between modules.

Stopping: :func:`install_stop_checks` puts a forward pre-hook on every module of a model; it raises
:class:`Stopped` in the thread of a job that was cancelled (the page's Stop button, ``Job.cancel`` of
gradio_client), ran past its time limit, or belongs to a server that is shutting down. The work ends
within one module's time, whole image or tiled, and the lane takes its next job.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch
from torch import nn

from exda.errors import UserError

FAST_LANE_PIXELS = 1_000_000  # about 1000 x 1000: a few seconds of CPU with the default model
SLOW_LANE_WAITING = 4  # large images waiting at once; more are refused (each may take minutes)

T = TypeVar("T")
_running = threading.local()  # .job: the Job this lane thread is working on
_checked_models: weakref.WeakSet[nn.Module] = weakref.WeakSet()  # models with stop checks installed


class Stopped(UserError):
    """A job ended before its work: cancelled, over its time limit, or the server is shutting down."""


class Job:
    """One request's restoration: whether it must stop, and how many torch threads it may use."""

    def __init__(self, time_limit: float | None) -> None:
        self.time_limit = time_limit
        self.state = "queued"  # -> "running" -> "done"; "dropped" when cancelled before it started
        self.deadline: float | None = None
        self.queued_at = time.monotonic()
        self.waited = 0.0  # seconds between queueing and starting
        self._stop_reason: str | None = None
        self._threads: Callable[[], int] = torch.get_num_threads

    def stop(self, reason: str) -> None:
        """Ask the job to end at its next check (the first reason given is the one reported)."""
        if self._stop_reason is None:
            self._stop_reason = reason

    def start(self, threads: Callable[[], int]) -> None:
        now = time.monotonic()
        self.state, self.waited, self._threads = "running", now - self.queued_at, threads
        self.deadline = None if self.time_limit is None else now + self.time_limit

    def check(self) -> None:
        """Raise Stopped when the job must end; else set this thread's torch threads to the job's share."""
        if self._stop_reason is not None:
            raise Stopped(self._stop_reason)
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise Stopped(f"stopped after {self.time_limit:g} s, this server's time limit per image "
                          "(exda serve --time-limit); send a smaller image, or restore it with `exda restore` "
                          "on your own machine")
        if torch.get_num_threads() != (threads := self._threads()):
            torch.set_num_threads(threads)


def check_running_job() -> None:
    """The stop check of the job running in this thread (nothing outside a lane)."""
    job = getattr(_running, "job", None)
    if job is not None:
        job.check()


def _stop_check_hook(module: nn.Module, args: tuple) -> None:
    check_running_job()


def install_stop_checks(model: nn.Module) -> None:
    """Check the running job before every module's forward, so that stopping takes effect within one
    module's time. Models are shared by the lanes; each thread checks its own job. Once per model: the
    restorer cache hands the same model out again."""
    if model in _checked_models:
        return
    for module in model.modules():
        module.register_forward_pre_hook(_stop_check_hook)
    _checked_models.add(model)


class Lane:
    """One worker thread and its queue."""

    def __init__(self, name: str, max_waiting: int | None) -> None:
        self.name = name
        self.max_waiting = max_waiting
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"exda-serve-{name}")
        self.waiting = 0
        self.running: Job | None = None


class Lanes:
    """The fast and the slow lane, and the torch threads they share."""

    def __init__(self, threads: int | None = None, fast_pixels: int = FAST_LANE_PIXELS,
                 slow_waiting: int = SLOW_LANE_WAITING) -> None:
        self.threads = threads or torch.get_num_threads()
        self.fast_pixels = fast_pixels
        self.fast, self.slow = Lane("fast", None), Lane("slow", slow_waiting)
        self._lock = threading.Lock()
        self._jobs: set[Job] = set()
        self._closed = False

    def lane_for(self, pixels: int) -> Lane:
        return self.fast if pixels <= self.fast_pixels else self.slow

    def share(self) -> int:
        """Torch threads for one running job: all of them, or half while both lanes work."""
        busy = sum(lane.running is not None for lane in (self.fast, self.slow))
        return max(1, self.threads // max(1, busy))

    async def run(self, lane: Lane, job: Job, work: Callable[[], T]) -> T:
        """Run ``work`` in ``lane`` as ``job``. Cancelling the await stops the job: a queued one never
        starts, a running one raises Stopped at its next check."""
        with self._lock:
            if self._closed:
                raise Stopped("the server is shutting down")
            if lane.max_waiting is not None and lane.waiting >= lane.max_waiting:
                raise UserError(f"the server is busy with large images ({lane.waiting} waiting); try again in a "
                                f"few minutes, or send an image of at most {self.fast_pixels / 1e6:g} megapixels")
            lane.waiting += 1
            self._jobs.add(job)
        future = asyncio.get_running_loop().run_in_executor(lane.executor, self._work, lane, job, work)
        try:
            return await future
        except asyncio.CancelledError:
            job.stop("cancelled")
            with self._lock:
                if job.state == "queued":
                    job.state = "dropped"
                    lane.waiting -= 1
                    self._jobs.discard(job)
            raise

    def _work(self, lane: Lane, job: Job, work: Callable[[], T]) -> T:
        with self._lock:
            if job.state == "dropped":
                raise Stopped("cancelled")
            lane.waiting -= 1
            lane.running = job
            job.start(self.share)
        _running.job = job
        try:
            job.check()
            return work()
        finally:
            _running.job = None
            with self._lock:
                lane.running, job.state = None, "done"
                self._jobs.discard(job)

    def close(self) -> None:
        """Stop every job, queued or running, and wait for the lane threads to end."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs)
        for job in jobs:
            job.stop("the server is shutting down")
        for lane in (self.fast, self.slow):
            lane.executor.shutdown(wait=True, cancel_futures=True)
