"""What a new user meets: outputs never replaced silently, messages never on a progress bar's line, an
`exda models` that prints as it measures, a demo table that states its conditions."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
from PIL import Image

from exda.cli import main
from exda.engine.demo import conditions
from exda.models.profile import model_rows


def _photo(path: Path, seed: int = 0) -> Path:
    Image.fromarray((np.random.default_rng(seed).random((11, 13, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_existing_output_is_replaced_only_with_overwrite(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    src = _photo(tmp_path / "g1.png")
    assert main(["restore", str(src), "--checkpoint", str(tiny_checkpoint)]) == 0
    out = tmp_path / "g1_restored.png"
    out.write_bytes(b"keep me")
    assert main(["restore", str(src), "--checkpoint", str(tiny_checkpoint)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"exda restore: error: {out} exists; pass --overwrite to "
                                                    "replace it"]
    assert out.read_bytes() == b"keep me"
    assert main(["restore", str(src), "--checkpoint", str(tiny_checkpoint), "--overwrite"]) == 0
    assert Image.open(out).size == (13, 11)


def test_folder_refuses_before_restoring_anything(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        _photo(folder / f"p{i}.png", i)
    out = tmp_path / "photos_restored"
    out.mkdir()
    for i in (0, 2):
        (out / f"p{i}.png").write_bytes(b"old")
    assert main(["restore", str(folder), "--checkpoint", str(tiny_checkpoint)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"exda restore: error: 2 outputs exist already (p0.png, p2.png in {out}); pass --overwrite to "
                   "replace them"]
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p2.png"]  # nothing was restored
    assert main(["restore", str(folder), "--checkpoint", str(tiny_checkpoint), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p1.png", "p2.png"]


def test_each_message_starts_its_own_line_beside_the_progress_bar(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(2):
        _photo(folder / f"p{i}.png", i)
    assert main(["restore", str(folder)]) == 0  # the default model: its line is printed while the bar runs
    err = capsys.readouterr().err
    model_line = next(line for line in err.split("\n") if "default photo model" in line)
    assert model_line.split("\r")[-1].startswith("exda restore: default photo model"), repr(model_line)


def test_models_rows_come_one_at_a_time(capsys) -> None:
    assert inspect.isgenerator(model_rows(32, "restormer_test"))
    assert main(["models", "--filter", "restormer_test", "--size", "32"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows[1:]] == ["| exda_restormer_test", "| restormer_test"]


def test_demo_table_states_its_conditions() -> None:
    line = conditions({"coffee": np.zeros((2, 2, 3))}, 256)
    assert "centre-cropped to 256 px" in line and "seed 2026" in line and "BM3D" in line
    assert "at full size" in conditions({"coffee": np.zeros((2, 2, 3))}, None)
