"""benchmarks/clean_photos.py's measures: a known shift and a known dark frame give the expected numbers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "clean_photos.py"
spec = importlib.util.spec_from_file_location("clean_photos", SCRIPT)
clean_photos = importlib.util.module_from_spec(spec)
sys.modules["clean_photos"] = clean_photos  # dataclasses look their module up here
spec.loader.exec_module(clean_photos)


def photo(height: int = 37, width: int = 53) -> np.ndarray:
    """Thirds: pale green foliage, grey, saturated red; slight noise, odd size."""
    pixels = np.full((height, width, 3), 0.5, np.float32)
    pixels[:, : width // 3] = (0.4, 0.6, 0.42)  # green, unsaturated (HSV S 0.33)
    pixels[:, 2 * width // 3:] = (0.9, 0.1, 0.1)
    return pixels + np.random.default_rng(0).uniform(-0.02, 0.02, pixels.shape).astype(np.float32)


def test_a_known_channel_shift_is_measured_overall_and_in_green_and_saturated_pixels() -> None:
    ref = photo()
    out = ref + np.array([3, -2, 0], np.float32) / 255  # R up 3 levels, G down 2
    row = clean_photos.measure("shifted", out, ref)
    np.testing.assert_allclose(row.shift, (3, -2, 0), atol=1e-3)
    np.testing.assert_allclose(row.green_shift, (3, -2, 0), atol=1e-3)
    np.testing.assert_allclose(row.saturated_shift, (3, -2, 0), atol=1e-3)
    assert 0.3 < row.green_fraction < 0.36 and 0.3 < row.saturated_fraction < 0.36  # the thirds, not the grey
    expected_psnr = 10 * np.log10(255**2 / ((9 + 4 + 0) / 3))
    assert row.psnr == pytest.approx(expected_psnr, abs=1e-2)
    assert row.ring_psnr == pytest.approx(row.interior_psnr, abs=1e-2)
    assert row.ring_level == pytest.approx(1 / 3, abs=1e-3)  # (3 - 2 + 0) / 3 levels
    summary = clean_photos.summarise([row])["goals"]
    assert summary["max_shift"]["value"] == pytest.approx(3, abs=1e-3) and not summary["max_shift"]["pass"]
    assert summary["max_green_shift"]["where"] == "shifted R" and summary["ring_gap_db"]["pass"]


def test_only_green_pixels_shift_shows_in_the_green_measure() -> None:
    ref = photo()
    out = ref.copy()
    green = clean_photos.green_mask(ref)
    out[green] += np.array([10, 0, 0], np.float32) / 255  # the leaves turn yellow
    row = clean_photos.measure("leaves", out, ref)
    np.testing.assert_allclose(row.green_shift, (10, 0, 0), atol=1e-3)
    assert row.shift[0] == pytest.approx(10 * green.mean(), abs=1e-3)
    assert clean_photos.saturated_mask(np.array([[[0.2, 0.6, 0.25], [0.5, 0.5, 0.5]]])).tolist() == [[True, False]]


def test_a_dark_frame_shows_in_the_ring_and_not_in_the_interior() -> None:
    ref = photo()
    out = ref.copy()
    out[:2] -= 20 / 255  # a 2 px dark band along the top and left edges
    out[:, :2] -= 20 / 255
    row = clean_photos.measure("framed", out, ref)
    ring = clean_photos.ring_mask(*ref.shape[:2])
    assert ring.sum() == 37 * 53 - 29 * 45
    assert row.interior_psnr == clean_photos.PSNR_CAP and row.ring_psnr < 40
    darkened = np.zeros(ref.shape[:2], bool)
    darkened[:2], darkened[:, :2] = True, True
    corner = 4  # the 2 x 2 corner is darkened twice
    expected = -20 * (3 * (darkened.sum() - corner) + 3 * 2 * corner) / (3 * ring.sum())
    assert row.ring_level == pytest.approx(expected, abs=1e-2) and row.ring_level < 0
    gap = clean_photos.summarise([row])["goals"]["ring_gap_db"]
    assert gap["value"] > 50 and not gap["pass"] and gap["where"] == "framed"


def test_clean_pass_through_meets_every_goal_and_a_folder_without_images_is_one_clear_error(tmp_path: Path) -> None:
    ref = photo()
    summary = clean_photos.summarise([clean_photos.measure("same", ref.copy(), ref)])
    assert summary["all_pass"] and summary["goals"]["min_psnr"]["value"] == clean_photos.PSNR_CAP
    with pytest.raises(clean_photos.UserError, match="no photos in"):
        clean_photos.load_photos(tmp_path, 512)
    assert clean_photos.main(["--photos", str(tmp_path), "--checkpoint", str(tmp_path / "missing.safetensors")]) == 2
