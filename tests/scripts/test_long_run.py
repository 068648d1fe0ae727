"""The long-run tooling: scripts/train_default_gpu.sh continues a packed run (here on the CPU, a few steps)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from exda.data.io import save_image
from exda.engine.checkpoint import load_training_state
from exda.engine.config import config_from_dict
from exda.engine.trainer import train

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
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


@pytest.mark.slow
def test_long_run_slot_runs_its_runs_in_order_with_their_own_settings(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for split in ("train", "heldout"):
        (tmp_path / "pool" / split).mkdir(parents=True)
        save_image(tmp_path / "pool" / split / "p.png", rng.random((50, 60, 3)))
    tiny = ("--set model.name=exda_restormer_test --set train.compile=false --set data.patch_size=24 "
            "--set data.val_max_items=0 --set data.degradations=[noise25] --set data.task_repeats={} "
            "--set data.length=4 --set data.batch_size=2 --set train.iters=2 --set train.keep_steps=[2]").split()
    env = {**os.environ, "PYTHON": sys.executable, "EXDA_RUNS": str(tmp_path / "runs"),
           "EXDA_POOL": str(tmp_path / "pool"), "EXDA_STATE": str(tmp_path / "state"),  # not the repo's runs
           "EXDA_SHIPPED_PHOTO": str(tmp_path / "runs" / "default_photo_plain" / "checkpoints" / "step_2.safetensors")}
    slot = ["bash", str(ROOT / "scripts" / "long_run.sh"), "slot", "default_photo_plain", "default_photo_token_only",
            "default_photo_plain_cycle2"]
    done = subprocess.run([*slot, "--", *tiny], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    kwargs = {name: load_training_state(tmp_path / "runs" / name)["model_kwargs"]
              for name in ("default_photo_plain", "default_photo_token_only")}
    assert kwargs["default_photo_plain"]["value_transform"] == kwargs["default_photo_plain"]["global_token"] == "off"
    assert kwargs["default_photo_token_only"]["value_transform"] == "off"
    assert kwargs["default_photo_token_only"].get("global_token", "on") != "off"
    config = load_training_state(tmp_path / "runs" / "default_photo_plain")["config"]
    assert config["optim"]["schedule_iters"] is None  # the twin follows default_photo's schedule
    assert config["data"]["root"] == str(tmp_path / "pool" / "train")
    short = load_training_state(tmp_path / "runs" / "default_photo_token_only")["config"]
    assert short["optim"]["schedule_iters"] == 30000  # constant lr to its end, as the pair's at step 3,000
    assert (tmp_path / "runs" / "default_photo_plain" / "checkpoints" / "step_2.safetensors").is_file()
    cycle2 = load_training_state(tmp_path / "runs" / "default_photo_plain_cycle2")  # the twin's weights, fine-tuned
    assert cycle2["model_kwargs"]["value_transform"] == cycle2["model_kwargs"]["global_token"] == "off"
    assert cycle2["config"]["train"]["init_from"] == env["EXDA_SHIPPED_PHOTO"]
    assert cycle2["config"]["train"]["seed"] == 2
    assert "initialised from" in (tmp_path / "runs" / "default_photo_plain_cycle2" / "train.log").read_text()
    again = subprocess.run([*slot, "--", *tiny], env=env, capture_output=True, text=True)  # both finished: no-op
    log = (tmp_path / "runs" / "default_photo_plain" / "stdout.log").read_text()
    assert again.returncode == 0 and log.count("default_photo_plain: starting") == 1


def test_long_run_slot_skips_a_run_the_other_slot_is_training(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    env = {**os.environ, "PYTHON": sys.executable, "EXDA_RUNS": str(tmp_path / "runs"),
           "EXDA_STATE": str(tmp_path / "state")}
    with open(tmp_path / "runs" / "default_photo_seed1.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the other slot's flock holds it
        done = subprocess.run(["bash", str(ROOT / "scripts" / "long_run.sh"), "slot", "default_photo_seed1"],
                              env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "runs" / "default_photo_seed1").exists()
