"""Classical baselines: the image contract, that each one helps on the degradation it targets, best_baseline."""

import numpy as np
import pytest
import torch

from exda import baselines
from exda.baselines import CANDIDATES, METHODS, best_baseline, method_available, score
from exda.degradations import DegradationSampler, get_degradation
from exda.errors import UserError

H, W = 37, 53  # odd and non-square, to catch padding and transposition bugs


def smooth_image(channels: int = 3, seed: int = 0, h: int = H, w: int = W) -> np.ndarray:
    """A smooth float32 H x W x C test image in [0.05, 0.95] (low-frequency waves and a ramp per channel)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = []
    for _ in range(channels):
        fy, fx, phase = rng.uniform(0.04, 0.12), rng.uniform(0.04, 0.12), rng.uniform(0, 2 * np.pi)
        planes.append(0.45 + 0.25 * np.sin(fy * yy + fx * xx + phase) + 0.15 * (xx / w - 0.5))
    return np.clip(np.stack(planes, axis=2), 0.05, 0.95).astype(np.float32)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0)


def to_image(x: torch.Tensor) -> np.ndarray:
    return x[0].permute(1, 2, 0).clamp(0, 1).numpy().astype(np.float32)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return score(a, b)[0]


def add_noise(image: np.ndarray, sigma: float = 25 / 255, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, sigma, image.shape)
    return np.clip(image + noise, 0, 1).astype(np.float32)


def skip_if_unavailable(name: str) -> None:
    if not method_available(name):
        pytest.skip(f"{name} is not installed here")


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", list(METHODS))
def test_method_keeps_shape_dtype_range(name: str, channels: int) -> None:
    skip_if_unavailable(name)
    image = add_noise(smooth_image(channels), sigma=0.05)
    out = METHODS[name](image)
    assert out.shape == image.shape
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert not np.shares_memory(out, image)


@pytest.mark.parametrize("name", ["nl_means", "wavelet", "tv", "bm3d"])
def test_denoiser_raises_psnr_at_sigma_25(name: str) -> None:
    skip_if_unavailable(name)
    clean = smooth_image()
    noisy = add_noise(clean)
    assert psnr(METHODS[name](noisy), clean) > psnr(noisy, clean) + 3.0


def test_bm3d_told_the_true_sigma() -> None:
    skip_if_unavailable("bm3d")
    clean = smooth_image()
    noisy = add_noise(clean)
    told = baselines.bm3d(noisy, sigma=25 / 255)
    assert psnr(told, clean) > psnr(noisy, clean) + 3.0
    assert not np.array_equal(told, baselines.bm3d(noisy, sigma=5 / 255))  # the sigma given is the one used


def test_dark_channel_raises_psnr_on_haze() -> None:
    clean = smooth_image()
    hazy = to_image(DegradationSampler("haze", seed=0)(to_tensor(clean))[0])
    assert psnr(METHODS["dark_channel"](hazy), clean) > psnr(hazy, clean) + 3.0


def test_gamma_raises_psnr_on_a_darkened_image() -> None:
    clean = smooth_image()
    dark = clean**2.2
    assert psnr(METHODS["gamma"](dark), clean) > psnr(dark, clean) + 5.0
    assert abs(float(baselines._luminance(METHODS["gamma"](dark)).mean()) - 0.45) < 0.05


@pytest.mark.parametrize("name", ["median3", "median5"])
def test_median_raises_psnr_on_sparse_bright_streaks(name: str) -> None:
    clean = smooth_image()
    streaky = clean.copy()
    rng = np.random.default_rng(2)
    for y, x in zip(rng.integers(0, H - 4, 25), rng.integers(0, W, 25), strict=True):
        streaky[y : y + 4, x] = 1.0  # short one-pixel-wide vertical streaks
    assert psnr(METHODS[name](streaky), clean) > psnr(streaky, clean) + 5.0


def test_gray_world_removes_a_colour_cast() -> None:
    clean = np.repeat(smooth_image(1), 3, axis=2)  # neutral gray scene
    cast = clean * np.array([0.5, 0.9, 1.0], dtype=np.float32)
    balanced = METHODS["gray_world"](cast)
    means = balanced.reshape(-1, 3).mean(axis=0)
    assert np.ptp(means) < 1e-3


def test_guided_filter_keeps_constants_and_follows_its_guide() -> None:
    constant = np.full((H, W), 0.3)
    np.testing.assert_allclose(baselines.guided_filter(constant, constant, 4, 1e-3), constant, atol=1e-12)
    guide = smooth_image(1)[:, :, 0].astype(np.float64)
    np.testing.assert_allclose(baselines.guided_filter(guide, guide, 4, 1e-8), guide, atol=1e-3)


def test_wiener_is_deterministic() -> None:
    blurred = smooth_image()
    np.testing.assert_array_equal(METHODS["wiener"](blurred), METHODS["wiener"](blurred))


def test_methods_reject_bad_images() -> None:
    with pytest.raises(ValueError, match="C = 1 or 3"):
        METHODS["identity"](np.zeros((H, W), dtype=np.float32))
    with pytest.raises(ValueError, match="float"):
        METHODS["identity"](np.zeros((H, W, 3), dtype=np.uint8))


def test_best_baseline_matches_computing_the_method_by_hand() -> None:
    sampler = DegradationSampler("low_light", seed=0)
    clean = [smooth_image(seed=s) for s in (0, 1)]
    degraded = [to_image(sampler(to_tensor(x))[0]) for x in clean]
    name, mean_psnr, mean_ssim = best_baseline("low_light", degraded, clean)
    assert name in CANDIDATES["low_light"]
    by_hand = [score(METHODS[name](y), x) for y, x in zip(degraded, clean, strict=True)]
    assert mean_psnr == pytest.approx(np.mean([p for p, _ in by_hand]))
    assert mean_ssim == pytest.approx(np.mean([s for _, s in by_hand]))
    for other in CANDIDATES["low_light"]:
        assert mean_psnr >= np.mean([psnr(METHODS[other](y), x) for y, x in zip(degraded, clean, strict=True)])


def test_best_baseline_on_clean_images_is_identity() -> None:
    clean = [smooth_image(seed=3)]
    name, mean_psnr, mean_ssim = best_baseline("clean", clean, [x.copy() for x in clean])
    assert name == "identity"
    assert mean_psnr == float("inf")
    assert mean_ssim == pytest.approx(1.0)


def test_best_baseline_rejects_unknown_degradations_and_mismatched_lists() -> None:
    with pytest.raises(UserError, match="known: clean, noise15"):
        best_baseline("fog", [smooth_image()], [smooth_image()])
    with pytest.raises(ValueError, match="as many"):
        best_baseline("haze", [smooth_image()], [])
    with pytest.raises(ValueError, match="shapes differ"):
        best_baseline("haze", [smooth_image()], [smooth_image(h=31)])


def test_bm3d_missing_is_reported_and_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(baselines, "_bm3d_module", lambda: None)
    assert not method_available("bm3d")
    with pytest.raises(UserError, match="pip install"):
        METHODS["bm3d"](smooth_image())
    clean = smooth_image()
    name, _, _ = best_baseline("noise25", [add_noise(clean)], [clean])
    assert name in CANDIDATES["noise25"] and name != "bm3d"


def test_candidates_name_real_degradations_and_methods() -> None:
    for degradation, names in CANDIDATES.items():
        get_degradation(degradation)  # raises UserError for an unregistered name
        assert names, degradation
        assert set(names) <= set(METHODS), degradation
    assert set(METHODS) == {name for names in CANDIDATES.values() for name in names}  # no unused method
    with pytest.raises(UserError, match="unknown baseline method"):
        method_available("deep_prior")
