"""`exda demo`: a model beside the degraded input and the best classical method, on a tiny random model
(the shipped default model's quality is not tested here)."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import exda
from exda import baselines
from exda.baselines import CANDIDATES, score
from exda.cli import main
from exda.commands import demo as demo_command
from exda.data.io import to_numpy, to_tensor
from exda.data.samples import load_sample
from exda.engine import demo
from exda.engine.demo import Row, compare, degrade, save_grid, to_markdown
from exda.inference import pretrained
from exda.inference.fast import optimize_for_inference
from exda.inference.tiling import restore

DEGRADATIONS = ("clean", "noise25", "haze")
SEED = 5


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return optimize_for_inference(exda.create_model("exda_restormer_test"))


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    """Two held-out photos, 40 x 48 crops (non-square)."""
    crops = {"coffee": (150, 250), "flower": (200, 300)}
    return {name: np.ascontiguousarray(load_sample(name)[y : y + 40, x : x + 48]) for name, (y, x) in crops.items()}


@pytest.fixture(scope="module")
def compared(model, photos) -> tuple[list[Row], list]:
    with pytest.MonkeyPatch.context() as patch:
        _without_bm3d(patch)
        return compare(model, photos, DEGRADATIONS, seed=SEED, grid_photo="flower")


def _without_bm3d(patch: pytest.MonkeyPatch) -> None:
    """BM3D takes over a second per small crop here; the other denoisers stand in (as without the package)."""
    patch.setattr(baselines, "_bm3d_module", lambda: None)


def test_compare_scores_every_degradation(compared, model, photos) -> None:
    rows, _ = compared
    assert [r.degradation for r in rows] == list(DEGRADATIONS)
    for r in rows:
        assert math.isfinite(r.restored_psnr) and 0 < r.restored_ssim <= 1
        assert r.baseline in CANDIDATES[r.degradation]
    clean = rows[0]
    assert math.isinf(clean.input_psnr) and clean.input_ssim == 1.0
    assert clean.baseline == "identity" and math.isinf(clean.baseline_psnr)
    assert all(math.isfinite(r.input_psnr) and math.isfinite(r.baseline_psnr) for r in rows[1:])
    # the noise25 row is the mean over the photos, each degraded with its own seed
    noisy = [degrade(img, "noise25", SEED + 1000 + i) for i, img in enumerate(photos.values())]
    with torch.inference_mode():
        restored = [to_numpy(restore(model, to_tensor(x)[None])[0].clamp(0, 1)) for x in noisy]
    scores = [score(y, c) for y, c in zip(restored, photos.values(), strict=True)]
    assert rows[1].restored_psnr == pytest.approx(np.mean([s[0] for s in scores]), abs=1e-4)
    inputs = [score(x, c)[0] for x, c in zip(noisy, photos.values(), strict=True)]
    assert rows[1].input_psnr == pytest.approx(np.mean(inputs), abs=1e-6)


def test_compare_grid_rows(compared, photos) -> None:
    rows, grid = compared
    assert [name for name, _ in grid] == list(DEGRADATIONS)
    for _, images in grid:
        assert len(images) == 4 and all(image.shape == (40, 48, 3) for image in images)
        np.testing.assert_array_equal(images[3], photos["flower"])  # the chosen photo, clean
    np.testing.assert_array_equal(grid[0][1][0], photos["flower"])  # "clean" leaves the input alone
    assert not np.array_equal(grid[1][1][0], photos["flower"])


def test_markdown_and_grid(compared, tmp_path: Path) -> None:
    rows, grid = compared
    lines = to_markdown(rows).splitlines()
    assert len(lines) == 2 + len(DEGRADATIONS) and lines[0].startswith("| degradation |")
    assert lines[2].startswith("| clean | identical |") and "(identity) identical" in lines[2]
    assert lines[3].startswith("| noise25 | ") and lines[3].endswith(" dB |") and "identical" not in lines[3]
    save_grid(tmp_path / "grid.png", grid, [r.baseline for r in rows])
    with Image.open(tmp_path / "grid.png") as im:
        assert im.format == "PNG" and im.height > im.width / 2
        lossless = np.asarray(im.convert("RGB"), dtype=np.float32)
    save_grid(tmp_path / "grid.jpg", grid, [r.baseline for r in rows])  # the docs' grids: JPEG by suffix
    with Image.open(tmp_path / "grid.jpg") as im:
        assert im.format == "JPEG" and im.size == (lossless.shape[1], lossless.shape[0])
        assert np.abs(np.asarray(im.convert("RGB"), dtype=np.float32) - lossless).mean() < 4  # the same picture


def test_demo_cli_writes_strict_json(tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys) -> None:
    ckpt = tiny_checkpoint
    monkeypatch.setattr(demo_command, "compare", functools.partial(demo.compare, degradations=("clean", "noise25")))
    _without_bm3d(monkeypatch)
    out = tmp_path / "demo"
    assert main(["demo", "--checkpoint", str(ckpt), "--crop", "40", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["demo_grid.png", "results.json", "results.md"]

    def refuse(constant: str):
        raise ValueError(f"not JSON: {constant}")

    record = json.loads((out / "results.json").read_text(), parse_constant=refuse)  # no Infinity / NaN
    assert record["model"] == "restormer_test" and record["crop"] == 40
    assert [r["degradation"] for r in record["rows"]] == ["clean", "noise25"]
    assert record["rows"][0]["input_psnr"] is None and record["rows"][1]["input_psnr"] > 0
    assert "| clean | identical |" in (out / "results.md").read_text()
    captured = capsys.readouterr()
    assert "wrote results.md" in captured.out and "BM3D not installed" in captured.err


def test_demo_without_the_default_model_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path)
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("exda demo: error: the default photo model is not installed")
    assert not (tmp_path / "demo").exists()
