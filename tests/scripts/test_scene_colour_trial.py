"""benchmarks/scene_colour_trial.py: EMA and raw weights of each arm and its control, on the validation
crops, the red-scaled held-out photos and the green evaluation photos."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest
import torch

import exda
from exda.engine.checkpoint import save_checkpoint

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "scene_colour_trial.py"
spec = importlib.util.spec_from_file_location("scene_colour_trial", SCRIPT)
scene_colour_trial = importlib.util.module_from_spec(spec)
spec.loader.exec_module(scene_colour_trial)


@pytest.fixture
def photos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_photos) -> Path:
    """Two held-out photos and the green evaluation photos, random pixels, in place of the pools."""
    monkeypatch.setattr(scene_colour_trial, "HELDOUT", write_photos(tmp_path / "heldout", ("a", "b"), 200, 210))
    monkeypatch.setattr(scene_colour_trial, "EVAL_PHOTOS",
                        write_photos(tmp_path / "eval", scene_colour_trial.GREEN, 40, 48))
    monkeypatch.setattr(scene_colour_trial, "VALIDATION_CROPS", 12)  # one crop per task
    return tmp_path


def test_each_arm_is_measured_with_ema_and_raw_weights(photos: Path) -> None:
    torch.manual_seed(0)
    model = exda.create_model("restormer_test")
    ema = copy.deepcopy(model)
    with torch.no_grad():
        for p in ema.parameters():
            p.mul_(0.5)  # EMA weights that differ from the raw ones
    checkpoint = save_checkpoint(photos / "run", "last", model=model, ema_model=ema, config={}, step=7, metrics={},
                                 train_state=None)
    out = photos / "trial.json"
    assert scene_colour_trial.main(["--arm", "same", str(checkpoint), str(checkpoint), "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    (arm,) = record["arms"]
    assert arm["control"] == arm["arm"]
    ema_row, raw_row = arm["arm"]["results"]
    assert (ema_row["weights"], raw_row["weights"], ema_row["step"]) == ("ema", "raw", 7)
    assert set(ema_row["validation"]) == {*scene_colour_trial.TASKS, "average"}
    assert ema_row["validation"] != raw_row["validation"]
    assert set(ema_row["green_photos"]) == set(scene_colour_trial.GREEN)
    assert set(ema_row["tinted_red_shift"]) == {"R x 0.5", "R x 0.35"}
    assert out.with_suffix(".md").read_text().count("| same |") == 4  # control and arm, EMA and raw each


def test_missing_green_photos_are_one_line(photos: Path, tiny_checkpoint: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    (photos / "eval" / f"{scene_colour_trial.GREEN[0]}.png").unlink()
    out = photos / "x.json"
    assert scene_colour_trial.main(["--arm", "a", str(tiny_checkpoint), str(tiny_checkpoint), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"scene_colour_trial: photos missing: ['{scene_colour_trial.GREEN[0]}']")
    assert not out.exists()
