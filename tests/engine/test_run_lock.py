"""A run folder belongs to one `exda train` at a time: a second one on the same --out refuses in one line,
and a killed run frees the folder at once (the kernel drops its flock), so --resume goes on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import exda
from exda.cli import main
from exda.engine.run_lock import LOCK_NAME, run_lock
from exda.errors import UserError

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fcntl locks are POSIX")
ROOT = Path(exda.__file__).resolve().parents[1]


def _config(path: Path, iters: int) -> Path:
    path.write_text(json.dumps({
        "model": {"name": "exda_restormer_test"},
        "data": {"degradations": ["noise25"], "patch_size": 16, "batch_size": 2, "num_workers": 0, "length": 4,
                 "val_max_items": 0},
        "train": {"iters": iters, "val_every": 0, "ckpt_every": 1, "log_every": 1000, "device": "cpu"}}))
    return path


@pytest.mark.slow
def test_second_train_on_the_same_out_refuses_and_a_killed_run_frees_it(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    config = _config(tmp_path / "long.yaml", iters=100_000)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-m", "exda", "train", "--config", str(config), "--out", str(run)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoints" / "last.json").is_file():  # training, so holding the lock
            assert first.poll() is None and time.monotonic() < deadline, "the first run did not start"
            time.sleep(0.2)
        for resume in ([], ["--resume"]):  # this test's process is the second exda train
            assert main(["train", "--config", str(config), "--out", str(run), *resume]) == 2
            err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
            assert err == [f"exda train: error: {run} is in use by another exda train (process {first.pid}); "
                           "wait for it to finish, or choose another --out"]
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    short = _config(tmp_path / "short.yaml", iters=1)
    assert main(["train", "--config", str(short), "--out", str(run)]) == 2  # free again: now the usual refusal
    assert "already holds a checkpoint; pass --resume" in capsys.readouterr().err
    with run_lock(run):  # the kill released it: a lock taken now succeeds at once
        assert (run / LOCK_NAME).read_text().strip() == str(os.getpid())


def test_lock_is_released_when_the_block_ends_or_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), run_lock(tmp_path):
        raise RuntimeError("a training error")
    with run_lock(tmp_path):
        with pytest.raises(UserError, match="in use by another exda train"), run_lock(tmp_path):
            pass  # a second holder (another open file, as another process would have) is refused
    with run_lock(tmp_path):
        pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="cannot use"), run_lock(tmp_path / "file"):
        pass
