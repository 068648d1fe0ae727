"""Sample images shipped inside installed packages load offline; export writes readable PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from exda.data.io import load_image
from exda.data.samples import HELDOUT, TRAIN, export_samples, list_samples, load_sample, sample_names
from exda.errors import UserError


def test_catalogue_splits_are_disjoint_and_complete() -> None:
    names = {info.name for kind in ("natural", "medical") for info in list_samples(kind)}
    assert set(TRAIN).isdisjoint(HELDOUT) and set(TRAIN) | set(HELDOUT) == names
    assert {"astronaut", "china", "grace_hopper", "ct_small", "mri_head_s1045"} <= names
    assert all(info.origin and info.licence for kind in ("natural", "medical") for info in list_samples(kind))
    assert sample_names("heldout", "medical") == ["ct_small"]


@pytest.mark.parametrize("name", ["chelsea", "motorcycle_left", "china", "grace_hopper"])
def test_natural_samples_load_offline(name: str) -> None:
    pixels = load_sample(name)
    assert pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.dtype == np.float32
    assert 0.0 <= pixels.min() and pixels.max() <= 1.0 and pixels.std() > 0.05


@pytest.mark.parametrize(("name", "shape"), [("mri_head_s1045", (256, 256, 1)), ("mr_small", (64, 64, 1))])
def test_medical_samples_load_offline(name: str, shape: tuple[int, int, int]) -> None:
    pixels = load_sample(name)
    assert pixels.shape == shape and pixels.min() == 0.0 and pixels.max() == 1.0


def test_load_sample_returns_a_fresh_copy() -> None:
    first = load_sample("mr_small")
    first[:] = 0
    assert load_sample("mr_small").max() == 1.0
    with pytest.raises(UserError, match="unknown sample"):
        load_sample("lena")


def test_export_writes_16bit_png_for_medical(tmp_path: Path) -> None:
    paths = export_samples(tmp_path, split="heldout", kind="medical")
    assert paths == [tmp_path / "ct_small.png"]
    loaded = load_image(paths[0])
    assert loaded.bit_depth == 16
    np.testing.assert_allclose(loaded.pixels, load_sample("ct_small"), atol=1 / 65535)
    with pytest.raises(UserError, match="split must be one of"):
        export_samples(tmp_path, split="validation")

