"""`exda.restore` from Python: paths, arrays and tensors in, the input's shape, type and range out, the same
pixels as `exda restore`; the clamp lives in the restore path, not in the networks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import exda
from exda.cli import main
from exda.data.io import load_image, save_image
from exda.inference.loader import load_network
from exda.inference.tiling import restore

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def checkpoint(make_checkpoint, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("api"), "exda_restormer_test")


def test_top_level_names() -> None:
    assert exda.optimize_for_inference is exda.inference.fast.optimize_for_inference
    assert {"restore", "optimize_for_inference"} <= set(exda.__all__)


def test_uint8_array_matches_the_cli_pixel_for_pixel(checkpoint: Path, tmp_path: Path) -> None:
    pixels = (RNG.random((23, 29, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in.png")
    assert main(["restore", str(tmp_path / "in.png"), "--checkpoint", str(checkpoint), "--precision", "fp32",
                 "--tile", "16", "--tile-overlap", "4"]) == 0
    cli = np.asarray(Image.open(tmp_path / "in_restored.png"))
    api = exda.restore(pixels, checkpoint=checkpoint, precision="fp32", tile=16, tile_overlap=4)
    assert api.dtype == np.uint8 and api.shape == pixels.shape
    np.testing.assert_array_equal(api, cli)
    from_path = exda.restore(tmp_path / "in.png", checkpoint=checkpoint, precision="fp32", tile=16, tile_overlap=4)
    np.testing.assert_array_equal(from_path, cli)


def test_float_output_is_clamped_while_the_network_output_is_not(checkpoint: Path) -> None:
    x = torch.rand(1, 3, 21, 17, generator=torch.Generator().manual_seed(1))
    net, _ = load_network(checkpoint)
    with torch.no_grad():
        raw = net(x)
    assert raw.min() < 0 or raw.max() > 1  # a random-init network overshoots: the clamp below is needed
    out = exda.restore(x, checkpoint=checkpoint, precision="fp32")
    assert out.shape == x.shape and out.dtype == x.dtype and 0 <= out.min() and out.max() <= 1
    torch.testing.assert_close(out, restore(net, x).clamp(0, 1), rtol=0, atol=1e-5)  # tiling.restore: margin
    array = exda.restore(x[0].permute(1, 2, 0).double().numpy(), checkpoint=checkpoint, precision="fp32")
    assert array.dtype == np.float64 and array.shape == (21, 17, 3) and 0 <= array.min() and array.max() <= 1


def test_shapes_and_types_come_back_as_given(checkpoint: Path, tmp_path: Path) -> None:
    kw = {"checkpoint": checkpoint, "precision": "fp32"}
    assert exda.restore(torch.rand(2, 3, 13, 11), **kw).shape == (2, 3, 13, 11)
    assert exda.restore(torch.rand(3, 13, 11).half(), **kw).dtype == torch.float16
    u8 = exda.restore((torch.rand(3, 9, 10) * 255).to(torch.uint8), **kw)
    assert u8.dtype == torch.uint8 and u8.shape == (3, 9, 10)
    gray = exda.restore((RNG.random((12, 14)) * 65535).astype(np.uint16), **kw)
    assert gray.dtype == np.uint16 and gray.shape == (12, 14)
    rgba = (RNG.random((10, 12, 4)) * 255).astype(np.uint8)
    out = exda.restore(rgba, **kw)
    assert out.shape == rgba.shape and np.array_equal(out[..., 3], rgba[..., 3])  # alpha set aside, put back
    save_image(tmp_path / "deep.png", RNG.random((9, 13, 3)), bit_depth=16)
    deep = exda.restore(tmp_path / "deep.png", **kw)
    assert deep.dtype == np.uint16 and deep.shape == load_image(tmp_path / "deep.png").pixels.shape


def test_bad_inputs_are_one_clear_error(checkpoint: Path) -> None:
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        exda.restore(RNG.random((8, 8, 3)) * 255, checkpoint=checkpoint)
    with pytest.raises(TypeError, match="uint8, uint16 or float"):
        exda.restore(np.zeros((8, 8, 3), np.int32), checkpoint=checkpoint)
    with pytest.raises(TypeError, match="a path, a NumPy array or a torch tensor"):
        exda.restore([[0.5]], checkpoint=checkpoint)
    with pytest.raises(exda.errors.UserError, match="not found"):
        exda.restore("no_such_photo.png", checkpoint=checkpoint)


def test_default_model_without_a_checkpoint() -> None:
    photo = (RNG.random((20, 24, 3)) * 255).astype(np.uint8)
    out = exda.restore(photo)
    assert out.dtype == np.uint8 and out.shape == photo.shape and not np.array_equal(out, photo)
