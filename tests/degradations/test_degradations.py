"""Contract tests over every registered degradation, plus physics checks of single operators."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pydicom.data import get_testdata_file
from scipy import ndimage
from skimage import data
from skimage.transform import resize

from exda.data.io import load_image
from exda.degradations import (
    Compose,
    DegradationSampler,
    Stage,
    get_degradation,
    list_degradations,
)
from exda.degradations.blur import shake_trajectory, trajectory_kernel
from exda.degradations.jpeg import jpeg_roundtrip
from exda.degradations.mixtures import CDD11, MIX_GROUPS
from exda.degradations.mri import cartesian_mask
from exda.degradations.ops import filter2d
from exda.errors import UserError

NAMES = list(list_degradations())
MEDICAL = {"ct", "pet", "mri", "mri_sr", "mri_noise", "mri_undersample"}
IDENTITY = {"clean"}  # the identity: every seed and strength give the input back, which is its contract


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / ((a.double() - b.double()) ** 2).mean()))


def odd_image(channels: int = 3, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    """A smooth-plus-texture 37 x 31 image: odd, non-square sizes catch padding bugs."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 37), torch.linspace(0, 1, 31), indexing="ij")
    base = 0.2 + 0.5 * (0.5 * yy + 0.5 * xx)
    x = base + 0.1 * torch.rand(1, channels, 37, 31, generator=g)
    return x.clamp(0, 1).to(dtype)


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """A real photo (scikit-image's astronaut) at 96 x 96."""
    img = resize(data.astronaut(), (96, 96), anti_aliasing=True).astype(np.float32)
    return torch.from_numpy(img).permute(2, 0, 1)[None]


@pytest.fixture(scope="module")
def ct_slice() -> torch.Tensor:
    """pydicom's 128 x 128 CT test slice, HU-windowed to [0, 1] as in AMIR (via exda.data.io)."""
    pixels = load_image(get_testdata_file("CT_small.dcm")).pixels
    return torch.from_numpy(pixels).permute(2, 0, 1)[None]


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_output_other_seed_differs(name: str) -> None:
    x = odd_image()
    first, params = DegradationSampler(name, seed=0)(x)
    again, params_again = DegradationSampler(name, seed=0)(x)
    assert torch.equal(first, again) and params == params_again
    others = [DegradationSampler(name, seed=s)(x)[0] for s in (1, 2, 3)]
    if name in IDENTITY:
        assert all(torch.equal(other, x) for other in [first, *others])
    else:
        assert any(not torch.equal(first, other) for other in others)


@pytest.mark.parametrize("channels, dtype", [(3, torch.float32), (1, torch.float64)])
@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_range_kept(name: str, channels: int, dtype: torch.dtype) -> None:
    x = odd_image(channels, dtype)
    y, _ = DegradationSampler(name, seed=5)(x)
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1


@pytest.mark.parametrize("name", NAMES)
def test_params_are_json_and_replay_exactly(name: str) -> None:
    x = odd_image(seed=1)
    deg = get_degradation(name)
    y, params = DegradationSampler(deg, seed=7)(x)
    stored = json.loads(json.dumps(params))
    assert stored == params
    assert torch.equal(deg.apply(x, **stored), y)


# PSNR (dB) at strength 1, seed 0. Noise bands follow from 20 log10(255 / sigma) (clipping at black and
# white lowers the error a little); low light is LOL-like (LOL inputs average about 7.8 dB); other
# degradations must visibly degrade a 96 x 96 photo (< 35 dB) without destroying it (> 10 dB; > 7 dB for
# mixtures, whose effects compound); medical operators are applied to a CT slice.
BANDS = {"noise15": (24.0, 25.6), "noise25": (19.8, 21.5), "noise50": (14.0, 16.0), "noise": (14.0, 25.6)}


def psnr_band(name: str) -> tuple[float, float]:
    if name in BANDS:
        return BANDS[name]
    if name in MEDICAL:
        return 18.0, 42.0
    deg = get_degradation(name)
    if "low_light" in {part.name for part in getattr(deg, "parts", (deg,))}:  # random_mix may draw it too
        return 5.0, 18.0
    return (7.0, 30.0) if isinstance(deg, Compose) else (10.0, 35.0)


@pytest.mark.parametrize("name", NAMES)
def test_psnr_plausible_and_falls_with_strength(name: str, photo: torch.Tensor, ct_slice: torch.Tensor) -> None:
    x = ct_slice if name in MEDICAL else photo
    if name in IDENTITY:
        for strength in (0.5, 1.0, 1.5):
            assert torch.equal(DegradationSampler(name, seed=0, strength=strength)(x)[0], x)
        return
    low, high = psnr_band(name)
    assert low < psnr(DegradationSampler(name, seed=0)(x)[0], x) < high
    mild = psnr(DegradationSampler(name, seed=0, strength=0.5)(x)[0], x)
    severe = psnr(DegradationSampler(name, seed=0, strength=1.5)(x)[0], x)
    assert severe < mild


def test_cdd11_names_resolve_to_ordered_mixtures() -> None:
    assert len(CDD11) == 11
    for name in ("haze", "rain", "snow"):
        assert get_degradation(name) is get_degradation(name)
        assert name in list_degradations()
    assert get_degradation("low") is get_degradation("low_light")
    for name in CDD11:
        deg = get_degradation(name)
        if "_" in name:
            assert isinstance(deg, Compose) and deg.task == name
            stages = [part.stage for part in deg.parts]
            assert stages == sorted(stages) and len(deg.parts) == len(name.split("_"))
    steps = get_degradation("low_haze_rain").sample_params(odd_image(), torch.Generator().manual_seed(0))["steps"]
    assert [step["name"] for step in steps] == ["haze", "rain", "low_light"]


def test_compose_sorts_parts_into_physical_order() -> None:
    mix = Compose("test_mix", [get_degradation("jpeg"), get_degradation("noise25"), get_degradation("haze")])
    assert [p.name for p in mix.parts] == ["haze", "noise25", "jpeg"]
    x = odd_image()
    y, params = DegradationSampler(mix, seed=3)(x)
    manual = x
    for step in params["steps"]:
        manual = get_degradation(step["name"]).apply(manual, **step["params"])
    assert torch.equal(y, manual)


def test_random_mix_draws_one_to_three_from_distinct_groups() -> None:
    mix, x, counts = get_degradation("random_mix"), odd_image(), set()
    group_of = {name: i for i, group in enumerate(MIX_GROUPS) for name in group}
    sampler = DegradationSampler(mix, seed=0)
    for _ in range(20):
        names = [step["name"] for step in sampler.degradation.sample_params(x, sampler.generator)["steps"]]
        groups = [group_of[n] for n in names]
        assert 1 <= len(names) <= 3 and len(set(groups)) == len(groups)
        assert [get_degradation(n).stage for n in names] == sorted(get_degradation(n).stage for n in names)
        counts.add(len(names))
    assert counts == {1, 2, 3}


def test_sampler_advances_and_restarts_with_seed() -> None:
    x = odd_image()
    sampler = DegradationSampler("rain", seed=11)
    first, second = sampler(x)[1], sampler(x)[1]
    assert first != second
    assert DegradationSampler("rain", seed=11)(x)[1] == first


def test_user_errors() -> None:
    with pytest.raises(UserError, match="unknown degradation 'fog'.*haze"):
        get_degradation("fog")
    with pytest.raises(UserError, match="strength"):
        DegradationSampler("haze", strength=-1.0)
    with pytest.raises(UserError, match="C 1 or 3"):
        DegradationSampler("haze")(torch.rand(1, 2, 16, 16))
    with pytest.raises(UserError, match="depth map"):
        get_degradation("haze").apply(odd_image(), beta=1.0, airlight=0.9, depth=torch.zeros(10, 10))


def test_clean_is_the_identity_with_no_params() -> None:
    x = odd_image(seed=4)
    clean = get_degradation("clean")
    y, params = DegradationSampler("clean", seed=9)(x)
    assert params == {} and torch.equal(y, x) and y is not x and y.dtype == x.dtype
    assert torch.equal(DegradationSampler("clean", seed=9)(x)[0], y) and torch.equal(clean.apply(x, **params), x)
    assert clean.task == "clean" and "clean" in list_degradations()
    gray = odd_image(1, torch.float64)
    assert torch.equal(DegradationSampler("clean", seed=0)(gray)[0], gray)


def test_noise_is_gaussian_on_8bit_levels() -> None:
    x = torch.full((1, 3, 64, 64), 128 / 255)
    y = get_degradation("noise25").apply(x, sigma=25.0, seed=0)
    assert torch.equal(torch.round(y * 255), y * 255)
    assert abs(float((y - x).std() * 255) - 25.0) < 1.0


def test_noise_is_truncated_to_8_bits_as_the_peers_astype_uint8() -> None:
    from exda.degradations.ops import random_field

    x = torch.rand(1, 3, 37, 31, generator=torch.Generator().manual_seed(0)).mul(255).round().div(255)
    y = get_degradation("noise15").apply(x, sigma=15.0, seed=3)
    noisy = (x * 255 + 15.0 * random_field(x.shape, 3, x, normal=True)).clamp(0, 255)
    assert torch.equal(y * 255, noisy.floor())  # np.clip(...).astype(np.uint8)
    assert not torch.equal(y * 255, noisy.round())


def test_haze_follows_the_scattering_model_with_a_given_depth() -> None:
    haze, x = get_degradation("haze"), odd_image()
    assert torch.allclose(haze.apply(x, beta=2.0, airlight=0.8, depth=torch.zeros(37, 31)), x)
    far = haze.apply(x, beta=50.0, airlight=0.8, depth=torch.ones(1, 1, 37, 31))  # depth is relative, in [0, 1]
    assert torch.allclose(far, torch.full_like(x, 0.8), atol=1e-6)
    mixed = get_degradation("haze_rain").sample_params(x, torch.Generator().manual_seed(0))
    clear_air = get_degradation("haze_rain").apply(x, **mixed, depth=torch.zeros(37, 31))
    assert torch.equal(clear_air, get_degradation("rain").apply(x, **mixed["steps"][1]["params"]))


def test_underwater_loses_red_first() -> None:
    x = torch.full((1, 3, 32, 32), 0.9)
    y, _ = DegradationSampler("underwater", seed=0)(x)
    red, green, blue = y.mean(dim=(0, 2, 3)).tolist()
    assert red < green and red < blue


def test_jpeg_matches_pillow_roundtrip() -> None:
    x = odd_image()
    y = get_degradation("jpeg").apply(x, quality=20)
    ints = torch.round(x[0] * 255).to(torch.uint8).permute(1, 2, 0).numpy()
    expected = jpeg_roundtrip(ints, 20).astype(np.float32) / 255
    assert np.array_equal(y[0].permute(1, 2, 0).numpy(), expected)


def test_filter2d_matches_scipy_mirror_convolution_even_for_large_kernels() -> None:
    x = odd_image(1).double()
    kernel = trajectory_kernel(shake_trajectory(3), 45.0).double()  # wider than the 31-pixel image
    expected = ndimage.convolve(x[0, 0].numpy(), kernel.numpy(), mode="mirror")
    assert np.allclose(filter2d(x, kernel)[0, 0].numpy(), expected, atol=1e-10)
    assert abs(float(kernel.sum()) - 1.0) < 1e-6


def test_mri_mask_keeps_centre_and_acceleration() -> None:
    mask = cartesian_mask(96, acceleration=4.0, center_fraction=0.08, seed=0, like=torch.zeros(1))
    assert int(mask.sum()) == 24 and bool(mask[44:52].all())


def test_pet_thinning_is_unbiased() -> None:
    x = torch.full((1, 1, 64, 64), 0.5)
    y = get_degradation("pet").apply(x, counts=400.0, dose_fraction=0.1, seed=0)
    assert abs(float(y.mean()) - 0.5) < 0.01 and float(y.std()) > 0.05


def test_pet_low_dose_counts_are_poisson_not_thinned() -> None:
    # From a noiseless map the low-dose counts are Poisson: variance = mean (binomial thinning of
    # round(x * counts) gives (1 - dose_fraction) of it, 10 % too little here).
    x = torch.full((1, 1, 256, 256), 0.5, dtype=torch.float64)
    counts, dose = 400.0, 0.1
    y = get_degradation("pet").forward(x, counts=counts, dose_fraction=dose, seed=0) * counts * dose
    assert float(y.mean()) == pytest.approx(20.0, rel=0.01)
    assert float(y.var()) / float(y.mean()) == pytest.approx(1.0, abs=0.03)
    assert y.dtype == x.dtype and torch.allclose(y, y.round(), atol=1e-9)  # whole counts


def test_mri_low_resolution_truncates_k_space() -> None:
    i, j = torch.meshgrid(torch.arange(32.0), torch.arange(37.0), indexing="ij")
    smooth = 0.5 + 0.2 * torch.cos(2 * torch.pi * 3 * i / 32) * torch.cos(2 * torch.pi * 2 * j / 37)
    fine = 0.2 * torch.cos(torch.pi * i)  # Nyquist rows: outside the kept central half of k-space
    mri_sr = get_degradation("mri_sr")
    low = mri_sr.forward((smooth + fine).view(1, 1, 32, 37).double(), factor=2.0)
    # low frequencies pass untouched, high ones are removed exactly (no bicubic blur or aliasing)
    assert torch.allclose(low[0, 0], smooth.double(), atol=1e-12)
    spectrum = torch.fft.fft2(low[0, 0])
    freq_h = torch.fft.fftfreq(32, d=1 / 32).abs()
    assert spectrum[freq_h > 7].abs().max() < 1e-9


def test_ct_recovers_the_slice_at_high_dose(ct_slice: torch.Tensor) -> None:
    ct = get_degradation("ct")
    assert psnr(ct.apply(ct_slice, dose=1e9, views=180, seed=0), ct_slice) > 38.0
    assert psnr(ct.apply(ct_slice, dose=1e4, views=180, seed=0), ct_slice) < 30.0


def test_stages_are_in_physical_order() -> None:
    assert Stage.MEDIUM < Stage.WEATHER < Stage.ILLUMINATION < Stage.OPTICS < Stage.SENSOR < Stage.COMPRESSION


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", NAMES)
def test_cuda_matches_cpu(name: str) -> None:
    x = odd_image()
    y_cpu, params = DegradationSampler(name, seed=2)(x)
    y_gpu = get_degradation(name).apply(x.cuda(), **params)
    assert y_gpu.device.type == "cuda" and y_gpu.dtype == x.dtype
    # same random fields on both devices; kernels may differ in the last bits, which can flip a rounding
    assert (y_gpu.cpu() - y_cpu).abs().mean() < 2e-3
