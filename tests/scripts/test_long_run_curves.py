"""benchmarks/long_run_curves.py on tiny validation logs: the paired table, and a continued run drawn on."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "long_run_curves.py"
spec = importlib.util.spec_from_file_location("long_run_curves", SCRIPT)
long_run_curves = importlib.util.module_from_spec(spec)
spec.loader.exec_module(long_run_curves)


def write_log(folder: Path, rows: list[tuple[int, float, float]]) -> None:
    """(step, hours, clean PSNR) per validation; noise PSNR is clean - 10."""
    folder.mkdir(parents=True)
    lines = [json.dumps({"step": step, "train_hours": hours, "mean_psnr": psnr - 5,
                         "per_task": {"clean": {"psnr": psnr}, "noise25": {"psnr": psnr - 10}}})
             for step, hours, psnr in rows]
    (folder / "validation.jsonl").write_text("\n".join(lines) + "\n")


def test_pairs_by_step_and_a_continued_run_counts_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_log(tmp_path / "default_photo", [(500, 1.0, 30.0), (1000, 2.0, 31.0)])
    write_log(tmp_path / "default_photo_plain", [(500, 0.9, 29.5), (1000, 1.8, 31.5)])
    write_log(tmp_path / "default_photo_plain_cycle2", [(500, 0.5, 31.0)])
    out = tmp_path / "curves.json"
    monkeypatch.setattr(sys, "argv", ["long_run_curves.py", "--training", str(tmp_path), "--out", str(out)])
    assert long_run_curves.main() == 0
    result = json.loads(out.read_text())
    pair = [p for p in result["paired"] if (p["a"], p["b"]) == ("default_photo", "default_photo_plain")]
    assert [(p["step"], p["mean_gain"], p["tasks_won"]) for p in pair] == [(500, 0.5, 2), (1000, -0.5, 0)]
    (cycle2,) = result["runs"]["default_photo_plain_cycle2"]  # on from the twin's last step and hour
    assert cycle2["step"] == 1500 and cycle2["train_hours"] == pytest.approx(2.3)
    assert out.with_suffix(".png").is_file()
    summary = out.with_suffix(".md").read_text()
    assert "(`training/default_photo_plain_cycle2`): 1 validations, last at step 1500 after 2.30 h" in summary
