"""Tiled inference reproduces untiled inference exactly for a purely local model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from exda.inference.tiling import edge_weights, restore, restore_tiled, tile_starts


def _local_model(channels: int = 3) -> nn.Module:
    """Two 3x3 convs: receptive radius 2 px, i.e. at most overlap // 4 for overlap 8."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1), nn.GELU(), nn.Conv2d(8, channels, 3, padding=1)
    ).eval()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.rand(1, 3, 97, 83, generator=torch.Generator().manual_seed(0))


def test_tiled_equals_untiled_for_local_model(image: torch.Tensor) -> None:
    model = _local_model()
    with torch.inference_mode():
        full = model(image)
    tiled = restore_tiled(model, image, tile=32, overlap=8)
    assert tiled.shape == full.shape
    assert (tiled - full).abs().max().item() < 1e-5


def test_tiling_with_batch_and_overlap_zero(image: torch.Tensor) -> None:
    model = _local_model()
    batch = torch.cat([image, image.flip(-1)])
    with torch.inference_mode():
        full = model(batch)
    # Without overlap the tile borders see zero padding, so the output differs only near the seams.
    seams = restore_tiled(model, batch, tile=32, overlap=0)
    assert (seams - full).abs().max().item() > 1e-3
    assert torch.allclose(seams[..., 2:30, 2:30], full[..., 2:30, 2:30], atol=1e-5)
    assert (restore_tiled(model, batch, tile=40, overlap=12) - full).abs().max().item() < 1e-5


def test_tile_covering_image_is_exact(image: torch.Tensor) -> None:
    model = _local_model()
    with torch.inference_mode():
        full = model(image)
    assert torch.equal(restore_tiled(model, image, tile=128, overlap=32), full)
    assert torch.equal(restore(model, image, tile=None, margin=0), full)
    assert torch.equal(restore(model, image, tile=97, margin=0), full)


def test_mirrored_margin_removes_the_zero_padding_frame() -> None:
    # A 3x3 box filter with zero padding darkens the outermost pixels of a flat grey image (the frame the
    # default model drew around low-light photos); with the mirrored margin the output stays flat.
    box = nn.Conv2d(3, 3, 3, padding=1, bias=False, groups=3).eval()
    nn.init.constant_(box.weight, 1 / 9)
    flat = torch.full((1, 3, 37, 45), 0.5)
    framed = restore(box, flat, margin=0)
    assert framed[..., 0, :].max() < 0.4 and framed[0, :, 18, 22].tolist() == pytest.approx([0.5] * 3)
    assert restore(box, flat).sub(0.5).abs().max() < 1e-6
    assert restore(box, flat, tile=16, overlap=8).sub(0.5).abs().max() < 1e-6
    assert restore(box, torch.full((1, 3, 2, 1), 0.5)).shape == (1, 3, 2, 1)  # smaller than the margin


def test_restore_dispatches_to_tiles(image: torch.Tensor) -> None:
    model = _local_model()
    expected = restore_tiled(model, image, tile=32, overlap=8)
    assert torch.equal(restore(model, image, tile=32, overlap=8, margin=0), expected)


def test_tile_starts_cover_and_align_to_border() -> None:
    assert tile_starts(97, 32, 8) == [0, 24, 48, 65]
    assert tile_starts(20, 32, 8) == [0]
    assert tile_starts(56, 32, 8) == [0, 24]


def testedge_weights_form_partition_of_unity() -> None:
    left = edge_weights(32, 8, ramp_start=False, ramp_end=True)
    right = edge_weights(32, 8, ramp_start=True, ramp_end=False)
    assert torch.allclose(left[24:] + right[:8], torch.ones(8))
    assert left[:24].eq(1).all() and left[-2:].eq(0).all()


def test_bf16_path_runs_close(image: torch.Tensor) -> None:
    model = _local_model()
    with torch.inference_mode():
        full = model(image)
    out = restore(model, image, tile=32, overlap=8, bf16=True, margin=0)
    assert out.dtype == torch.float32
    # Measured on seeds 0-7: max |bf16 - fp32| is 1.3e-3 to 1.6e-3 (outputs span ~0.4); bound at ~2x.
    error = (out - full).abs().max().item()
    assert 0 < error < 3e-3  # nonzero: the model really ran under bf16 autocast


@pytest.mark.parametrize(("tile", "overlap"), [(32, 17), (0, 0), (32, -1)])
def test_invalid_tiling_raises(image: torch.Tensor, tile: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="tile|overlap"):
        restore_tiled(_local_model(), image, tile=tile, overlap=overlap)
