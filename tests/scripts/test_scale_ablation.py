"""benchmarks/scale_ablation.py on two tiny kept checkpoints: per-task metrics, the pair, the cache."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

import exda
from exda.engine.checkpoint import save_checkpoint

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "scale_ablation.py"
spec = importlib.util.spec_from_file_location("scale_ablation", SCRIPT)
scale_ablation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(scale_ablation)


def test_the_kept_pair_is_scored_paired_and_not_run_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch, write_photos) -> None:
    monkeypatch.setattr(scale_ablation, "native_bf16", lambda device: False)  # the same precision on every CPU
    for run, value_transform in (("default_photo", "dwconv_gelu"), ("default_photo_plain", "off")):
        torch.manual_seed(0)
        model = exda.create_model("exda_restormer_test", value_transform=value_transform)
        save_checkpoint(tmp_path / "training" / run, "step_3000", model=model, ema_model=model, config={},
                        step=3000, metrics={}, train_state=None)
    write_photos(tmp_path / "pool" / "heldout", ("a", "b"), 37, 45)
    out = tmp_path / "scale.json"
    argv = ["--training", str(tmp_path / "training"), "--runs", str(tmp_path / "none"), "--pool",
            str(tmp_path / "pool"), "--max-side", "40", "--out", str(out)]
    assert scale_ablation.main(argv) == 0
    assert capsys.readouterr().out.count("evaluating ") == 2
    result = json.loads(out.read_text())
    block = result["steps"]["3000"]
    assert set(block["runs"]) == {"default_photo", "default_photo_plain"} and block["precisions"] == ["fp32"]
    (pair,) = block["pairs"]
    exda_row, plain_row = block["runs"]["default_photo"], block["runs"]["default_photo_plain"]
    for task in scale_ablation.TASKS:
        assert pair["per_task"][task]["psnr"] == pytest.approx(
            exda_row["per_task"][task]["psnr"] - plain_row["per_task"][task]["psnr"])
    assert (pair["a"], pair["b"], pair["tasks"]) == ("default_photo", "default_photo_plain", 12)
    assert exda_row["images"] == 24 and 0 <= exda_row["per_task"]["clean"]["lpips"] < 1
    assert result["cost"]["exda"]["parameters"] > result["cost"]["plain"]["parameters"]
    assert "| default_photo - default_photo_plain |" in out.with_suffix(".md").read_text()

    assert scale_ablation.main(argv) == 0  # both already scored: taken from the JSON
    assert "evaluating" not in capsys.readouterr().out
    assert json.loads(out.read_text())["evaluations"] == result["evaluations"]
