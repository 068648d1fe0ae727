"""The fast inference path (exda/inference/fast.py) against fp32 eager on real photo crops, and the memory
estimate behind automatic tiling (exda/inference/memory.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import exda
from exda.data.io import to_tensor
from exda.data.samples import load_sample
from exda.inference import fast as fast_module
from exda.inference import memory
from exda.inference.fast import FastInference, native_bf16, optimize_for_inference
from exda.inference.memory import (
    DEFAULT_CAP,
    TILE_MULTIPLE,
    default_budget,
    estimate_peak_bytes,
    first_width,
    format_size,
    parse_size,
    tile_for_budget,
)
from exda.metrics import psnr

MODELS = ["restormer_test", "exda_restormer_test", "promptir_test"]
MIN_PSNR = 45.0  # dB between the fast path (bf16 where native) and fp32 eager: the requirement
EXACT_PSNR = 100.0  # fp32 on the fast path: only the NHWC layout differs, so the sums round differently


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """scikit-image's astronaut, 3 x 512 x 512 in [0, 1]."""
    return to_tensor(load_sample("astronaut"))


def _crops(photo: torch.Tensor, h: int, w: int, batch: int) -> torch.Tensor:
    """``batch`` different h x w crops of the photo (face, suit, background), B x 3 x h x w."""
    return torch.stack([photo[:, 60 + 90 * i : 60 + 90 * i + h, 180 + 40 * i : 180 + 40 * i + w] for i in range(batch)])


def _model(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return exda.create_model(name, **kwargs).eval()


@pytest.mark.parametrize("precision", ["auto", "fp32", "bf16"])
@pytest.mark.parametrize("name", MODELS)
def test_fast_path_matches_fp32_eager_on_photos(name: str, precision: str, photo: torch.Tensor) -> None:
    model = _model(name)
    inputs = [_crops(photo, 96, 136, batch=2), _crops(photo, 61, 77, batch=1)]
    with torch.inference_mode():
        expected = [model(x) for x in inputs]
    fast = optimize_for_inference(model, precision=precision)
    assert fast.bf16 == {"auto": native_bf16(torch.device("cpu")), "fp32": False, "bf16": True}[precision]
    for x, reference in zip(inputs, expected, strict=True):
        before = x.clone()
        y = fast(x)
        assert torch.equal(x, before)
        assert y.dtype == torch.float32 and y.is_contiguous() and y.shape == x.shape
        assert psnr(reference, x).max() < 40.0  # random weights do change the photo: agreement is not trivial
        assert psnr(y, reference).min() >= (MIN_PSNR if fast.bf16 else EXACT_PSNR)


def test_wrapper_passes_attributes_through_and_never_double_wraps() -> None:
    model = _model("exda_restormer_test", in_channels=1).train()
    fast = optimize_for_inference(model, precision="bf16")
    assert isinstance(fast, FastInference) and fast.model is model and not model.training
    assert fast.in_channels == 1 and fast.model_name == "exda_restormer_test"
    again = optimize_for_inference(fast, precision="fp32", channels_last=False)
    assert again.model is model and not isinstance(again.model, FastInference)
    assert not again.bf16 and again.memory_format == torch.contiguous_format
    x = torch.rand(2, 1, 37, 31, generator=torch.Generator().manual_seed(1))
    assert again(x).shape == (2, 1, 37, 31)
    with pytest.raises(ValueError, match="precision must be"):
        optimize_for_inference(model, precision="fp16")


@pytest.mark.parametrize("channels_last", [True, False])
def test_output_is_an_ordinary_tensor(channels_last: bool) -> None:
    # 32 x 48 needs no padding, so the network's last op hands back its own output: it must still be
    # usable outside inference_mode (in-place clamp), whatever the memory layout.
    fast = optimize_for_inference(_model("restormer_test"), precision="fp32", channels_last=channels_last)
    for h, w in ((32, 48), (37, 31)):
        y = fast(torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(2)))
        assert not y.is_inference() and y.is_contiguous()
        y.clamp_(0, 1)


def test_compile_falls_back_to_eager_when_the_compiler_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_compile(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    model = _model("restormer_test")
    x = torch.rand(1, 3, 37, 31, generator=torch.Generator().manual_seed(3))
    eager = optimize_for_inference(model, precision="fp32")(x)
    monkeypatch.setattr(torch, "compile", broken_compile)
    fast_module._compiler_works.cache_clear()  # the probe result is cached per process
    try:
        with pytest.warns(UserWarning, match=r"torch.compile is unavailable here \(RuntimeError\); using eager"):
            fast = optimize_for_inference(model, precision="fp32", compile=True)
    finally:
        fast_module._compiler_works.cache_clear()
    assert not fast.compiled and fast._call is model
    assert torch.equal(fast(x), eager)


def test_compile_flag_with_compiler_reported_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_module, "_compiler_works", lambda: False)
    fast = optimize_for_inference(_model("promptir_test"), compile=True)
    assert not fast.compiled and "compiled=False" in repr(fast)
    assert fast(torch.rand(1, 3, 29, 43, generator=torch.Generator().manual_seed(4))).shape == (1, 3, 29, 43)


def test_native_bf16_by_device() -> None:
    assert native_bf16(torch.device("cpu")) == fast_module.cpu_has_native_bf16()
    assert not native_bf16(torch.device("meta"))


# ------------------------------------------------------------------------------------------------- memory


@pytest.mark.parametrize(
    ("text", "size"),
    [("2G", 2 * 2**30), ("512M", 512 * 2**20), ("3.5GiB", int(3.5 * 2**30)), ("1024", 1024), (" 2g ", 2 * 2**30),
     ("64KB", 64 * 2**10), ("1T", 2**40)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["abc", "-1G", "0", "", "G", "2GG", "inf", "nan", "0.5"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_format_size() -> None:
    assert format_size(2**20) == "1.0 MiB" and format_size(3 * 2**29) == "1.5 GiB"


def test_tile_for_budget_fits_or_tiles_in_multiples_of_64() -> None:
    channels, h, w = 48, 3001, 4003
    assert tile_for_budget(channels, h, w, estimate_peak_bytes(channels, h, w)) is None
    assert tile_for_budget(channels, 37, 31, 1) is None  # no allowed tile is smaller than the image
    tiles = [tile_for_budget(channels, h, w, 2**k) for k in range(10, 38)]
    chosen = [t for t in tiles if t is not None]
    assert tiles[-1] is None and len(chosen) > 5
    assert all(t % TILE_MULTIPLE == 0 and t >= 2 * TILE_MULTIPLE for t in chosen)
    assert chosen == sorted(chosen) and len(set(chosen)) > 3  # monotone in the budget, and it does move
    for k, tile in zip(range(10, 38), tiles, strict=True):
        if tile is not None and tile > 2 * TILE_MULTIPLE:  # above the floor, the tile's own pass fits
            assert estimate_peak_bytes(channels, tile, tile) <= 2**k
            assert estimate_peak_bytes(channels, tile + TILE_MULTIPLE, tile + TILE_MULTIPLE) > 2**k


def test_default_budget_is_a_safe_share(monkeypatch: pytest.MonkeyPatch) -> None:
    assert 0 < default_budget() <= 2 * 2**30
    monkeypatch.setattr(memory, "available_bytes", lambda: 2**30)
    assert default_budget() == 2**28
    monkeypatch.setattr(memory, "available_bytes", lambda: None)
    assert default_budget() == DEFAULT_CAP


def test_first_width_is_the_first_convolution() -> None:
    assert first_width(nn.Sequential(nn.Linear(2, 2), nn.Conv2d(3, 7, 3), nn.Conv2d(7, 5, 3))) == 7
    assert first_width(nn.Linear(2, 2)) == 64
    model = exda.create_model("exda_restormer_test")
    assert first_width(model) == model.patch_embed.proj.out_channels


def test_auto_precision_keeps_a_bf16_unsafe_model_in_fp32(monkeypatch):
    import exda.inference.fast as fast

    monkeypatch.setattr(fast, "native_bf16", lambda device: True)
    assert fast.optimize_for_inference(exda.create_model("restormer_test")).bf16
    histoformer = exda.create_model("histoformer_test")
    assert not fast.optimize_for_inference(histoformer).bf16
    assert fast.optimize_for_inference(histoformer, precision="bf16").bf16  # asked for explicitly
