"""``exda serve``'s lanes, stop checks and work folder, without a server: a fake model whose modules each
take a few milliseconds, so that stopping can be seen to happen between modules."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from exda.inference.serve import WorkFolder
from exda.inference.serve_lanes import Job, Lanes, Stopped, install_stop_checks


class SlowStep(nn.Module):
    """Sleeps, then counts its call: a stand-in for one block of a network."""

    def __init__(self, calls: list[int], seconds: float) -> None:
        super().__init__()
        self.calls, self.seconds = calls, seconds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.seconds)
        self.calls.append(1)
        return x


def slow_model(steps: int, seconds: float = 0.005) -> tuple[nn.Module, list[int]]:
    calls: list[int] = []
    model = nn.Sequential(*(SlowStep(calls, seconds) for _ in range(steps)))
    install_stop_checks(model)
    return model, calls


def test_a_cancelled_job_stops_between_modules_and_frees_its_lane() -> None:
    model, calls = slow_model(2000)
    lanes = Lanes(threads=2)

    async def scenario() -> float:
        task = asyncio.create_task(lanes.run(lanes.slow, Job(None), lambda: model(torch.zeros(1))))
        while lanes.slow.running is None:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        start = time.monotonic()
        while lanes.slow.running is not None:
            await asyncio.sleep(0.001)
        return time.monotonic() - start

    try:
        freed_after = asyncio.run(scenario())
    finally:
        lanes.close()
    assert 0 < len(calls) < 200  # stopped long before the 2000 modules (10 s) ran
    assert freed_after < 1.0


def test_a_job_over_its_time_limit_stops_with_one_message() -> None:
    model, calls = slow_model(2000)
    lanes = Lanes(threads=2)
    try:
        with pytest.raises(Stopped, match=r"stopped after 0.1 s, this server's time limit .*--time-limit"):
            asyncio.run(lanes.run(lanes.fast, Job(0.1), lambda: model(torch.zeros(1))))
    finally:
        lanes.close()
    assert 0 < len(calls) < 200


def test_a_queued_job_cancelled_before_it_starts_never_runs() -> None:
    first, first_calls = slow_model(40)
    second, second_calls = slow_model(40)
    lanes = Lanes(threads=2)

    async def scenario() -> None:
        running = asyncio.create_task(lanes.run(lanes.fast, Job(None), lambda: first(torch.zeros(1))))
        queued = asyncio.create_task(lanes.run(lanes.fast, Job(None), lambda: second(torch.zeros(1))))
        while lanes.fast.running is None:
            await asyncio.sleep(0.005)
        queued.cancel()
        await running
        with pytest.raises(asyncio.CancelledError):
            await queued

    try:
        asyncio.run(scenario())
    finally:
        lanes.close()
    assert len(first_calls) == 40 and second_calls == []
    assert lanes.fast.waiting == 0


def test_the_lanes_split_the_torch_threads_while_both_run() -> None:
    seen: dict[str, int] = {}
    both_running = threading.Barrier(2, timeout=10)

    def work(name: str, model: nn.Module) -> None:
        both_running.wait()
        model(torch.zeros(1))  # the stop check sets this thread's share
        seen[name] = torch.get_num_threads()
        both_running.wait()

    lanes = Lanes(threads=4)

    async def scenario() -> None:
        await asyncio.gather(lanes.run(lanes.fast, Job(None), lambda: work("fast", slow_model(1)[0])),
                             lanes.run(lanes.slow, Job(None), lambda: work("slow", slow_model(1)[0])))

    try:
        asyncio.run(scenario())
        assert seen == {"fast": 2, "slow": 2}
        assert lanes.share() == 4  # idle again: a job alone gets them all
    finally:
        lanes.close()


def test_the_slow_lane_refuses_more_waiting_images_with_one_message() -> None:
    block = threading.Event()
    lanes = Lanes(threads=1, slow_waiting=1)

    async def scenario() -> None:
        running = asyncio.create_task(lanes.run(lanes.slow, Job(None), block.wait))
        while lanes.slow.running is None:
            await asyncio.sleep(0.005)
        waiting = asyncio.create_task(lanes.run(lanes.slow, Job(None), lambda: None))
        await asyncio.sleep(0.01)
        with pytest.raises(Exception, match=r"the server is busy with large images \(1 waiting\)"):
            await lanes.run(lanes.slow, Job(None), lambda: None)
        assert lanes.lane_for(10_000) is lanes.fast  # small images still have their lane
        block.set()
        await running
        await waiting

    try:
        asyncio.run(scenario())
    finally:
        lanes.close()


def test_closing_stops_running_work() -> None:
    model, calls = slow_model(2000)
    lanes = Lanes(threads=1)

    async def scenario() -> None:
        task = asyncio.create_task(lanes.run(lanes.slow, Job(None), lambda: model(torch.zeros(1))))
        while lanes.slow.running is None:
            await asyncio.sleep(0.005)
        start = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(None, lanes.close)
        assert time.monotonic() - start < 1.0
        with pytest.raises(Stopped, match="shutting down"):
            await task

    asyncio.run(scenario())
    assert len(calls) < 200


def test_work_folder_sweeps_old_entries_but_not_those_in_use(tmp_path: Path) -> None:
    folder = WorkFolder(tmp_path)
    old_upload = folder.files / "a" / "photo.png"
    old_upload.parent.mkdir()
    old_upload.write_bytes(b"x")
    busy = folder.files / "b" / "photo.png"
    busy.parent.mkdir()
    busy.write_bytes(b"x")
    with folder.request_dir() as fresh:
        (fresh / "photo_restored.png").write_bytes(b"x")
    hour_ago = time.time() - 3600
    for path in (old_upload, old_upload.parent, busy, busy.parent):
        os.utime(path, (hour_ago, hour_ago))
    with folder.using(busy):
        assert folder.sweep(max_age=600) == 1
    assert not old_upload.parent.exists() and busy.exists() and (fresh / "photo_restored.png").exists()
    assert folder.sweep(max_age=600) == 1  # no longer in use
    folder.remove()
    assert not folder.root.exists()


def test_a_failed_request_leaves_no_folder(tmp_path: Path) -> None:
    folder = WorkFolder(tmp_path)
    with pytest.raises(Stopped), folder.request_dir() as out:
        (out / "partial.png").write_bytes(b"x")
        raise Stopped("cancelled")
    assert list(folder.files.iterdir()) == []
    folder.remove()


def test_messages_lose_server_paths(tmp_path: Path) -> None:
    folder = WorkFolder(tmp_path)
    upload = folder.files / "0123abcd" / "my photo.png"
    text = (f"cannot read image {upload}: UnidentifiedImageError: cannot identify image file '{upload}'; "
            "see /usr/lib/python3/x.py, 8/16-bit")
    assert folder.public(text) == ("cannot read image my photo.png: UnidentifiedImageError: cannot identify image "
                                   "file 'my photo.png'; see x.py, 8/16-bit")
    folder.remove()
