"""benchmarks/tint_probe.py: every tint and the underwater row, each the mean output - input shift."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from exda.inference.restorer import Restorer

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "tint_probe.py"
spec = importlib.util.spec_from_file_location("tint_probe", SCRIPT)
tint_probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tint_probe)


def test_the_probe_reports_each_tints_mean_shift(tmp_path: Path, tiny_checkpoint: Path, write_photos) -> None:
    photos = write_photos(tmp_path / "photos", ("a", "b"), 40, 56)
    out = tmp_path / "probe.json"
    assert tint_probe.main(["--checkpoint", str(tiny_checkpoint), "--photos", str(photos), "--max-side", "32",
                            "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    shifts = record["checkpoints"][0]["shifts"]
    assert list(shifts) == [*tint_probe.TINTS, tint_probe.UNDERWATER] and record["photo_count"] == 2
    # the "R x 0.5" row, recomputed here through the same restore path
    restorer = Restorer.load(tiny_checkpoint, precision="fp32", device="cpu")
    loaded = tint_probe.load_photos(photos, 32)
    scale = torch.tensor([0.5, 1.0, 1.0]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = torch.stack([(restorer.run(x * scale)[0] - x * scale).mean((0, 2, 3)) for x in loaded.values()])
    np.testing.assert_allclose(shifts["R x 0.5"], (expected.mean(0) * 255).numpy(), atol=0.01)
    assert out.with_suffix(".md").read_text().count("\n|") == len(shifts) + 2  # header, rule, one row each


def test_a_folder_without_photos_is_one_line(tmp_path: Path, tiny_checkpoint: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert tint_probe.main(["--checkpoint", str(tiny_checkpoint), "--photos", str(tmp_path),
                            "--out", str(tmp_path / "x.json")]) == 2
    assert capsys.readouterr().err.strip() == f"tint_probe: no photos in {tmp_path}"
