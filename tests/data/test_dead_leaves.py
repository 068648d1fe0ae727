"""Dead-leaves images: seeded, in range, any size, colours from the palette, radii from the power law."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from exda.data.dead_leaves import dead_leaves, power_law_radii


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("size", [(37, 31), (1, 5), 24])
def test_shape_dtype_range_on_odd_sizes(size: int | tuple[int, int]) -> None:
    image = dead_leaves(size, _gen(0))
    height, width = (size, size) if isinstance(size, int) else size
    assert image.shape == (height, width, 3) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0


def test_same_seed_same_image_other_seed_other_image() -> None:
    kwargs = {"shading": 0.3, "blur_sigma": 0.8}
    first = dead_leaves((48, 40), _gen(3), **kwargs)
    np.testing.assert_array_equal(first, dead_leaves((48, 40), _gen(3), **kwargs))
    assert not np.array_equal(first, dead_leaves((48, 40), _gen(4), **kwargs))


def test_flat_disks_take_their_colours_from_the_palette() -> None:
    palette = np.array([[0.1, 0.2, 0.3], [0.9, 0.5, 0.0], [0.4, 0.4, 0.4]], np.float32)
    image = dead_leaves((33, 29), _gen(1), rmin=1.0, rmax=12.0, palette=palette)
    colours = np.unique(image.reshape(-1, 3), axis=0)
    assert len(colours) > 1 and all(np.isclose(palette, c).all(axis=1).any() for c in colours)


def test_image_has_many_sizes_of_regions() -> None:
    image = dead_leaves(64, _gen(2))
    assert image.std() > 0.05 and len(np.unique(image.reshape(-1, 3), axis=0)) > 50


def test_radii_follow_the_power_law() -> None:
    rmin, rmax = 2.0, 100.0
    radii = power_law_radii(20_000, _gen(0), rmin, rmax, alpha=3.0)
    assert rmin <= radii.min() and radii.max() <= rmax
    median = (rmin**-2 - 0.5 * (rmin**-2 - rmax**-2)) ** -0.5  # inverse CDF of r^-3 at 1/2
    assert abs(float(radii.median()) / median - 1) < 0.03


@pytest.mark.parametrize(("kwargs", "match"), [({"rmin": 0.1}, "rmin"), ({"rmin": 9.0, "rmax": 4.0}, "rmin"),
                                               ({"palette": np.zeros((4, 2))}, "palette")])
def test_bad_arguments_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dead_leaves(16, _gen(0), **kwargs)
