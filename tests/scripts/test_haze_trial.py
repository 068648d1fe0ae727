"""benchmarks/haze_trial.py: per-task PSNR of two checkpoints on the validation crops, and the dark channel."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "haze_trial.py"
spec = importlib.util.spec_from_file_location("haze_trial", SCRIPT)
haze_trial = importlib.util.module_from_spec(spec)
spec.loader.exec_module(haze_trial)


def test_the_trial_scores_both_checkpoints_per_task_and_the_dark_channel(tmp_path: Path, tiny_checkpoint: Path,
                                                                          write_photos) -> None:
    heldout = write_photos(tmp_path / "heldout", ("a", "b"), 200, 210)
    out = tmp_path / "trial.json"
    assert haze_trial.main(["--arm", "same", str(tiny_checkpoint), str(tiny_checkpoint), "--heldout", str(heldout),
                            "--pool", str(heldout), "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    (arm,) = record["arms"]
    assert arm["control"]["psnr"] == arm["arm"]["psnr"]
    assert set(arm["arm"]["psnr"]) == {*haze_trial.TASKS, "average"}
    dcp = record["dark_channel"]
    assert dcp["haze"]["dark_channel"]["count"] == dcp["clean"]["dark_channel"]["count"] > 0
    assert "input" not in dcp["clean"] and dcp["haze"]["input"]["mean"] < 40
    sep = record["separability"]
    assert sep["crops"] == 2 and set(sep["auc"]) == {"stretched_proxy", "near_veiled"}
    assert sep["mean_dark_channel"]["stretched_proxy"] > sep["mean_dark_channel"]["clean"]  # haze lifts it
    markdown = out.with_suffix(".md").read_text()
    assert "| same | arm - control | | +0.00 |" in markdown and "| clean (" in markdown


def test_roc_auc_counts_ties_half() -> None:
    assert haze_trial.roc_auc([2.0, 3.0], [1.0]) == 1.0
    assert haze_trial.roc_auc([1.0], [2.0]) == 0.0
    assert haze_trial.roc_auc([1.0, 2.0], [1.0, 2.0]) == 0.5


def test_a_missing_checkpoint_is_one_line(tmp_path: Path, tiny_checkpoint: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.safetensors"
    assert haze_trial.main(["--arm", "x", str(tiny_checkpoint), str(missing), "--heldout", str(tmp_path),
                            "--out", str(tmp_path / "x.json")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"haze_trial: no checkpoint file {missing}"
