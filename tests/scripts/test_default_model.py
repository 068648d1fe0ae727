"""benchmarks/default_model.py: the goals' arithmetic, and a run on a candidate checkpoint that writes beside --out."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

import exda
from exda.data.samples import load_sample
from exda.engine.checkpoint import save_checkpoint
from exda.engine.demo import Row, centre_crop
from exda.inference.pretrained import default_checkpoint

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "default_model.py"
spec = importlib.util.spec_from_file_location("default_model", SCRIPT)
default_model = importlib.util.module_from_spec(spec)
spec.loader.exec_module(default_model)


def _row(name: str, given: float, restored: float, classical: float, **references: float) -> Row:
    return Row(name, given, 0.5, restored, 0.6, "tv", classical, 0.5, dict(references))


def test_photo_goals_margins() -> None:
    rows = [_row("clean", math.inf, 36.0, math.inf), _row("rain", 20.0, 20.5, 19.0),
            _row("noise25", 20.0, 28.0, 27.0, **{default_model.BM3D_TRUE: 30.0}), _row("jpeg", 30.0, 31.5, 30.0)]
    goals = {(g["degradation"], g["goal"]): (g["margin_db"], g["met"]) for g in default_model.photo_goals(rows)}
    assert goals == {
        ("clean", "clean photo >= 35 dB"): (1.0, True),
        ("rain", ">= input + 1 dB"): (-0.5, False),
        ("rain", ">= best classical + 1 dB"): (0.5, True),  # rain is one of the tasks that must beat classical
        ("noise25", ">= input + 1 dB"): (7.0, True),
        ("noise25", ">= bm3d (true sigma) - 1 dB"): (-1.0, False),  # 28 against BM3D's 30
        ("jpeg", ">= input + 1 dB"): (0.5, True),  # jpeg need not beat classical
    }
    unmeasured = default_model.photo_goals([_row("noise25", 20.0, 28.0, 27.0)])  # no BM3D here
    assert unmeasured[-1]["met"] is None and unmeasured[-1]["margin_db"] is None
    table = default_model.goals_markdown(unmeasured)
    assert "| noise25 | >= bm3d (true sigma) - 1 dB | not measured | - |" in table
    assert table.endswith("1 of 1 measured goals met (1 not measured).")


def test_medical_goals_beat_input_and_tv() -> None:
    rows = [_row("clean", math.inf, 40.0, math.inf), _row("ct", 30.0, 31.5, 31.0, tv=32.0)]
    goals = default_model.medical_goals(rows)
    assert [(g["goal"], g["margin_db"], g["met"]) for g in goals] == [(">= input + 1 dB", 0.5, True),
                                                                     ("> tv", -0.5, False)]


@pytest.fixture
def small_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The held-out samples cropped to 48 px and three photo / two medical degradations, so that it runs in seconds."""
    monkeypatch.setattr(default_model, "load_sample", lambda name: centre_crop(load_sample(name), 48))
    monkeypatch.setattr(default_model, "DEMO_DEGRADATIONS", ("clean", "noise25", "haze"))
    monkeypatch.setattr(default_model, "MEDICAL_DEGRADATIONS", ("clean", "ct"))


def test_a_candidate_checkpoint_is_measured_beside_out(tmp_path: Path, tiny_checkpoint: Path, small_run) -> None:
    gray = exda.create_model("exda_restormer_test", in_channels=1)
    medical = save_checkpoint(tmp_path / "medical", "last", model=gray, config={}, step=7, metrics={}, train_state=None)
    shipped = default_checkpoint("photo").read_bytes()
    out = tmp_path / "results" / "candidate.json"
    out.parent.mkdir()
    assert default_model.main(["--photo-checkpoint", str(tiny_checkpoint), "--medical-checkpoint", str(medical),
                               "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["photo"]["checkpoint"] == str(tiny_checkpoint) and record["medical"]["step"] == 7
    assert [r["degradation"] for r in record["photo"]["rows"]] == ["clean", "noise25", "haze"]
    goals = [(g["degradation"], g["goal"]) for g in record["photo"]["goals"]]
    assert ("haze", ">= best classical + 1 dB") in goals and ("noise25", ">= best classical + 1 dB") not in goals
    ct = record["medical"]["rows"][1]
    tv_goal = record["medical"]["goals"][1]
    assert tv_goal["goal"] == "> tv" and tv_goal["margin_db"] == round(ct["restored_psnr"] - ct["references"]["tv"], 3)
    assert (out.parent / "candidate_grid.jpg").is_file() and (out.parent / "candidate_medical_grid.jpg").is_file()
    assert "### Goals" in out.with_suffix(".md").read_text()
    assert default_checkpoint("photo").read_bytes() == shipped  # a candidate never touches the shipped weights


def test_a_missing_checkpoint_is_one_line(tmp_path: Path, small_run, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "candidate.json"
    assert default_model.main(["--photo-checkpoint", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("default_model: ") and "nothing" in err and "\n" not in err
    assert not out.exists()
