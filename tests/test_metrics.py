"""Metrics agree with scikit-image on real photos and reject malformed input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from exda.metrics import METRICS, SSIM_PROTOCOLS, gt_data_range, medical_metrics, psnr, rgb_to_y, rmse, ssim

BASICSR_SSIM = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)


@pytest.fixture(scope="module")
def pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """Two real photo crops (odd sizes) and noisy + blurred versions, float64 B x 3 x 53 x 47."""
    rng = np.random.default_rng(0)
    clean = [
        data.astronaut()[120:173, 200:247].astype(np.float64) / 255.0,
        data.chelsea()[90:143, 150:197].astype(np.float64) / 255.0,
    ]
    degraded = []
    for img in clean:
        blurred = (img + np.roll(img, 1, axis=0) + np.roll(img, 1, axis=1)) / 3.0
        degraded.append(np.clip(blurred + rng.normal(0.0, 0.08, img.shape), 0.0, 1.0))
    return torch.stack([_to_tensor(d) for d in degraded]), torch.stack([_to_tensor(c) for c in clean])


def _np(x: torch.Tensor) -> np.ndarray:
    return x.permute(1, 2, 0).numpy()


def _skimage_y(img: np.ndarray) -> np.ndarray:
    return (16.0 + img @ np.array([65.481, 128.553, 24.966])) / 255.0


@pytest.mark.parametrize("crop_border", [0, 4])
@pytest.mark.parametrize("y_channel", [False, True])
def test_psnr_and_ssim_match_skimage(pairs, crop_border: int, y_channel: bool) -> None:
    pred, target = pairs
    ours_psnr = psnr(pred, target, crop_border=crop_border, y_channel=y_channel)
    ours_ssim = ssim(pred, target, crop_border=crop_border, y_channel=y_channel)
    ours_gauss = ssim(pred, target, crop_border=crop_border, y_channel=y_channel, gaussian=True)
    assert ours_psnr.shape == ours_ssim.shape == ours_gauss.shape == (2,)
    for i in range(2):
        p, t = _np(pred[i]), _np(target[i])
        if crop_border:
            inner = (slice(crop_border, -crop_border), slice(crop_border, -crop_border))
            p, t = p[inner], t[inner]
        axis = None
        if y_channel:
            p, t = _skimage_y(p), _skimage_y(t)
        else:
            axis = -1
        assert ours_psnr[i].item() == pytest.approx(peak_signal_noise_ratio(t, p, data_range=1.0), abs=1e-6)
        ref = structural_similarity(p, t, channel_axis=axis, data_range=1.0)
        assert ours_ssim[i].item() == pytest.approx(ref, abs=1e-4)
        ref_g = structural_similarity(p, t, channel_axis=axis, data_range=1.0, **BASICSR_SSIM)
        assert ours_gauss[i].item() == pytest.approx(ref_g, abs=1e-4)


def test_float32_input_is_computed_in_float64(pairs) -> None:
    pred, target = pairs
    got = ssim(pred.float(), target.float())
    assert got.dtype == torch.float64
    assert torch.allclose(got, ssim(pred, target), atol=1e-6)


def test_identical_images_and_direction(pairs) -> None:
    _, target = pairs
    assert torch.isinf(psnr(target, target)).all()
    assert torch.allclose(ssim(target, target), torch.ones(2, dtype=torch.float64))
    assert torch.equal(rmse(target, target), torch.zeros(2, dtype=torch.float64))
    assert [METRICS[name].lower_better for name in ("psnr", "ssim", "rmse")] == [False, False, True]
    pred, _ = pairs
    assert METRICS["psnr"](pred, target).shape == (2,)


def test_rmse_matches_numpy(pairs) -> None:
    pred, target = pairs
    expected = [math.sqrt(np.mean((_np(pred[i]) - _np(target[i])) ** 2)) for i in range(2)]
    assert rmse(pred, target).tolist() == pytest.approx(expected, abs=1e-12)


def test_rgb_to_y_matches_basicsr_formula() -> None:
    white, black = torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)
    assert torch.allclose(rgb_to_y(white), torch.full((1, 1, 2, 2), 235.0 / 255.0))
    assert torch.allclose(rgb_to_y(black), torch.full((1, 1, 2, 2), 16.0 / 255.0))


def test_y_channel_is_noop_for_grayscale() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(1, 1, 37, 31, generator=g), torch.rand(1, 1, 37, 31, generator=g)
    assert torch.equal(psnr(a, b, y_channel=True), psnr(a, b))


def test_medical_protocol_uses_gt_range() -> None:
    rng = np.random.default_rng(1)
    gt = rng.uniform(0.2, 0.7, (41, 37))
    pred = gt + rng.normal(0, 0.02, gt.shape)
    tp, tg = torch.from_numpy(pred)[None, None], torch.from_numpy(gt)[None, None]
    span = gt.max() - gt.min()
    assert gt_data_range(tg).item() == pytest.approx(span)
    out = medical_metrics(tp, tg)
    ref = structural_similarity(pred, gt, data_range=span, **BASICSR_SSIM)
    assert out["ssim"].item() == pytest.approx(ref, abs=1e-4)
    assert out["psnr"].item() == pytest.approx(peak_signal_noise_ratio(gt, pred, data_range=span), abs=1e-6)


def test_per_image_data_range_tensor(pairs) -> None:
    pred, target = pairs
    per_image = ssim(pred, target, data_range=torch.tensor([1.0, 2.0]))
    assert per_image[0].item() == pytest.approx(ssim(pred[:1], target[:1]).item())
    assert per_image[1].item() == pytest.approx(ssim(pred[1:], target[1:], data_range=2.0).item())


@pytest.mark.parametrize(
    ("pred", "target", "message"),
    [
        (torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 15), "shapes differ"),
        (torch.zeros(3, 16, 16), torch.zeros(3, 16, 16), "B x C x H x W"),
        (torch.full((1, 1, 16, 16), float("nan")), torch.zeros(1, 1, 16, 16), "NaN"),
        (torch.zeros(1, 1, 16, 16, dtype=torch.uint8), torch.zeros(1, 1, 16, 16, dtype=torch.uint8), "float"),
    ],
)
def test_invalid_input_raises(pred: torch.Tensor, target: torch.Tensor, message: str) -> None:
    for fn in (psnr, ssim, rmse):
        with pytest.raises(ValueError, match=message):
            fn(pred, target)


def test_too_small_or_overcropped_raises() -> None:
    x = torch.zeros(1, 3, 9, 9)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(x, x, gaussian=True)
    with pytest.raises(ValueError, match="crop_border"):
        psnr(x, x, crop_border=5)
    with pytest.raises(ValueError, match="one per image"):
        psnr(x, x, data_range=torch.tensor([1.0, 2.0]))


def test_moce_ir_ssim_protocol_is_its_test_py_call(pairs) -> None:
    # MoCE-IR's src/test.py: structural_similarity(clean, restored, channel_axis=2, gaussian_weights=True,
    # data_range=1.0), i.e. scikit-image's default sample covariance with the gaussian window.
    pred, target = pairs
    ours = ssim(pred, target, **SSIM_PROTOCOLS["moce_ir"])
    population = ssim(pred, target, **SSIM_PROTOCOLS["basicsr"])
    for i in range(2):
        ref = structural_similarity(_np(target[i]), _np(pred[i]), channel_axis=2, gaussian_weights=True,
                                    data_range=1.0)
        assert ours[i].item() == pytest.approx(ref, abs=1e-9)
        assert abs(population[i].item() - ref) > 1e-5  # the population variant is a different number
    assert torch.equal(ssim(pred, target, **SSIM_PROTOCOLS["skimage"]), ssim(pred, target))
