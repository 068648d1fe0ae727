"""The long-run tooling: scripts/train_default_gpu.sh continues a packed run (here on the CPU, a few steps)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from exda.data.io import save_image
from exda.engine.checkpoint import load_training_state
from exda.engine.config import config_from_dict
from exda.engine.trainer import train

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_script_continues_a_packed_run_with_a_larger_batch(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("heldout", 1)):
        (tmp_path / "pool" / split).mkdir(parents=True)
        for i in range(count):
            save_image(tmp_path / "pool" / split / f"p{i}.png", rng.random((60, 70, 3)))
    config = config_from_dict({
        "model": {"name": "exda_restormer_test"},
        "data": {"layout": "synthetic", "root": str(tmp_path / "pool" / "train"), "degradations": ["noise25"],
                 "patch_size": 24, "batch_size": 2, "num_workers": 0, "length": 6, "val_max_items": 0},
        "optim": {"lr": 1e-3, "warmup_iters": 1, "schedule": "wsd"},
        "train": {"iters": 2, "val_every": 0, "ckpt_every": 0, "ema_decay": 0.9, "device": "cpu"},
    })
    train(config, tmp_path / "cpu")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "run_state.py"), "pack", str(tmp_path / "cpu"),
                    str(tmp_path / "state")], check=True)
    sets = ("--set model.name=exda_restormer_test --set train.compile=false --set data.num_workers=0 "
            "--set data.patch_size=24 --set data.val_patch_size=32 --set data.val_max_items=2 "
            "--set data.degradations=[noise25] --set train.iters=5 --set data.task_repeats={}")
    env = {**os.environ, "DEVICE": "cpu", "PYTHON": sys.executable, "EXTRA_SETS": sets}
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "train_default_gpu.sh"), "5", str(tmp_path / "pool"), str(tmp_path / "gpu"),
         str(tmp_path / "state"), "3"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    state = load_training_state(tmp_path / "gpu" / "run")
    assert state["step"] == 5 and state["config"]["data"]["batch_size"] == 3
    log = (tmp_path / "gpu" / "run" / "train.log").read_text()
    assert "new data order (train.resume_exact=false)" in log and "data.batch_size (checkpoint 2, now 3)" in log
    assert (tmp_path / "gpu" / "state" / "state.safetensors").is_file()
