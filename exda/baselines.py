"""Classical (non-learned) restoration baselines, to compare the deep model against per degradation.

Every method is ``fn(image) -> image`` on float32 ``H x W x C`` in [0, 1] (C = 1 or 3) and returns the
same shape, float32, clipped to [0, 1]. The methods are blind, as the model is: none is told the
degradation's parameters (noise levels are estimated, deblurring assumes a small Gaussian PSF).

>>> from exda.baselines import CANDIDATES, METHODS, best_baseline
>>> restored = METHODS["dark_channel"](hazy)
>>> name, mean_psnr, mean_ssim = best_baseline("haze", [hazy], [clean])

``bm3d`` needs the optional ``bm3d`` package (``pip install 'exda[baselines]'``; free for non-commercial
use only, see its licence); without it :func:`method_available` is False, :func:`best_baseline` skips
it and calling it raises :class:`~exda.errors.UserError`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from types import ModuleType

import numpy as np
import torch
from scipy import ndimage
from skimage import exposure, filters, restoration

from exda.errors import UserError
from exda.metrics import psnr, ssim

Image = np.ndarray

_LUMA = (0.299, 0.587, 0.114)
_TV_WEIGHT_PER_SIGMA = 1.0  # Chambolle TV weight = this x the estimated noise sigma
_DCP_PATCH, _DCP_OMEGA, _DCP_T_MIN, _DCP_TOP = 15, 0.95, 0.1, 0.001  # He et al. 2009
_GUIDED_RADIUS, _GUIDED_EPS = 20, 1e-3
_PSF_SIGMA, _PSF_SIZE, _RL_ITERATIONS = 1.5, 9, 15
_GAMMA_TARGET = 0.45


def _check(image: Image) -> Image:
    """Validate an ``H x W x C`` (C = 1 or 3) float image and return it as float32."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] not in (1, 3):
        shape = getattr(image, "shape", None)
        raise ValueError(f"expected a numpy H x W x C image with C = 1 or 3, got shape {shape}")
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"expected a float image in [0, 1], got dtype {image.dtype}")
    return image.astype(np.float32, copy=False)


def _finish(out: np.ndarray, like: Image) -> Image:
    """Back to ``like``'s shape, float32, clipped to [0, 1]."""
    return np.clip(np.asarray(out, dtype=np.float32).reshape(like.shape), 0.0, 1.0)


def _per_channel(fn: Callable[[np.ndarray], np.ndarray], image: Image) -> np.ndarray:
    """Apply a 2-D operation to each channel and stack the results back to ``H x W x C``."""
    return np.stack([fn(image[:, :, c]) for c in range(image.shape[2])], axis=2)


def _luminance(image: Image) -> np.ndarray:
    """BT.601 luma of RGB (without offset), or the single channel."""
    if image.shape[2] == 1:
        return image[:, :, 0]
    return image @ np.asarray(_LUMA, dtype=image.dtype)


def estimate_noise_sigma(image: Image) -> float:
    """Gaussian noise sigma in [0, 1] units, averaged over channels (wavelet MAD, Donoho)."""
    return float(restoration.estimate_sigma(_check(image), average_sigmas=True, channel_axis=-1))


# ---------------------------------------------------------------------------------------------- denoising


def nl_means(image: Image) -> Image:
    """Non-local means (Buades et al.), fast mode, h = 0.8 sigma with sigma estimated from the image."""
    image = _check(image)
    sigma = estimate_noise_sigma(image)
    if sigma <= 0.0:
        return _finish(image, image)
    out = restoration.denoise_nl_means(image, patch_size=5, patch_distance=5, h=0.8 * sigma, sigma=sigma,
                                       fast_mode=True, channel_axis=-1)
    return _finish(out, image)


def wavelet(image: Image) -> Image:
    """Wavelet soft thresholding with BayesShrink (in YCbCr for RGB), sigma estimated per channel."""
    image = _check(image)
    out = restoration.denoise_wavelet(image, method="BayesShrink", mode="soft", rescale_sigma=True,
                                      convert2ycbcr=image.shape[2] == 3, channel_axis=-1)
    return _finish(out, image)


def tv(image: Image) -> Image:
    """Total-variation denoising (Chambolle), weight proportional to the estimated noise sigma."""
    image = _check(image)
    weight = _TV_WEIGHT_PER_SIGMA * estimate_noise_sigma(image)
    if weight <= 0.0:
        return _finish(image, image)
    return _finish(restoration.denoise_tv_chambolle(image, weight=weight, channel_axis=-1), image)


@functools.cache
def _bm3d_module() -> ModuleType | None:
    try:
        import bm3d
    except ImportError:
        return None
    return bm3d


def bm3d(image: Image, sigma: float | None = None) -> Image:
    """BM3D (Dabov et al.; the ``bm3d`` package, low-complexity profile, one thread). ``sigma`` is the noise's
    standard deviation on the [0, 1] scale; None estimates it from the image (what a blind method can do)."""
    image = _check(image)
    module = _bm3d_module()
    if module is None:
        raise UserError("the bm3d baseline needs the optional 'bm3d' package: pip install 'exda[baselines]'")
    if sigma is None:
        sigma = estimate_noise_sigma(image)
    if sigma <= 0.0:
        return _finish(image, image)
    profile = module.BM3DProfileLC()
    profile.num_threads = 1  # deterministic aggregation, and polite to a training run on the same CPU
    if image.shape[2] == 3:
        out = module.bm3d_rgb(image, sigma, profile=profile)
    else:
        out = module.bm3d(image[:, :, 0], sigma, profile=profile)
    return _finish(out, image)


# ---------------------------------------------------------------------------------------------- dehazing


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Edge-preserving smoothing of ``src`` steered by ``guide`` (He et al. 2010), both ``H x W``, box windows."""
    size = 2 * radius + 1

    def box(a: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(a, size=size, mode="reflect")

    guide, src = guide.astype(np.float64), src.astype(np.float64)
    mean_i, mean_p = box(guide), box(src)
    var_i = box(guide * guide) - mean_i * mean_i
    cov_ip = box(guide * src) - mean_i * mean_p
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)


def _dark_channel(image: np.ndarray) -> np.ndarray:
    """Minimum over channels, then over a square patch."""
    return ndimage.minimum_filter(image.min(axis=2), size=_DCP_PATCH, mode="nearest")


def dark_channel(image: Image) -> Image:
    """Dark channel prior dehazing (He et al. 2009) with guided-filter refinement of the transmission.

    Airlight A: the brightest input pixel among the 0.1% haziest (highest dark channel) pixels;
    transmission t = 1 - 0.95 dark(I / A), refined with the gray image as guide and clamped to >= 0.1;
    then J = (I - A) / t + A.
    """
    image = _check(image)
    dark = _dark_channel(image)
    count = max(1, int(round(_DCP_TOP * dark.size)))
    haziest = np.argpartition(dark.ravel(), -count)[-count:]
    pixels = image.reshape(-1, image.shape[2])[haziest]
    airlight = np.maximum(pixels[np.argmax(pixels.sum(axis=1))], 1e-3)
    transmission = 1.0 - _DCP_OMEGA * _dark_channel(image / airlight)
    transmission = guided_filter(_luminance(image), transmission, _GUIDED_RADIUS, _GUIDED_EPS)
    transmission = np.maximum(transmission, _DCP_T_MIN)[:, :, None]
    return _finish((image - airlight) / transmission + airlight, image)


# ---------------------------------------------------------------------------------------------- deblurring


@functools.cache
def _assumed_psf() -> np.ndarray:
    """The blind methods' guess at the blur: a normalised 9 x 9 Gaussian, sigma 1.5 px."""
    x = np.arange(_PSF_SIZE, dtype=np.float64) - (_PSF_SIZE - 1) / 2
    g = np.exp(-0.5 * (x / _PSF_SIGMA) ** 2)
    psf = np.outer(g, g)
    psf /= psf.sum()
    psf.setflags(write=False)
    return psf


def _deconvolve(image: Image, deconvolve_2d: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Image:
    """Per-channel deconvolution on a reflect-padded copy, so FFT wrap-around and zero borders stay outside."""
    pad = _PSF_SIZE
    padded = np.pad(image.astype(np.float64), ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    out = _per_channel(lambda channel: deconvolve_2d(channel, _assumed_psf()), padded)
    return _finish(out[pad:-pad, pad:-pad], image)


def wiener(image: Image) -> Image:
    """Unsupervised Wiener-Hunt deconvolution (Orieux et al.) with the assumed Gaussian PSF; seeded."""
    image = _check(image)
    return _deconvolve(image, lambda c, psf: restoration.unsupervised_wiener(c, psf, clip=False, rng=0)[0])


def richardson_lucy(image: Image) -> Image:
    """Richardson-Lucy deconvolution, 15 iterations, with the assumed Gaussian PSF."""
    image = _check(image)
    return _deconvolve(image, lambda c, psf: restoration.richardson_lucy(c, psf, num_iter=_RL_ITERATIONS, clip=False))


def unsharp(image: Image) -> Image:
    """Unsharp masking: add back the difference to a Gaussian blur (radius 1.5 px, amount 1)."""
    image = _check(image)
    # Per channel: unsharp_mask(channel_axis=-1) returns garbage (scikit-image issue #7264, still open in 0.26).
    sharpen = functools.partial(filters.unsharp_mask, radius=_PSF_SIGMA, amount=1.0, preserve_range=True)
    return _finish(_per_channel(sharpen, image), image)


# ---------------------------------------------------------------------------------------------- low light


def gamma(image: Image) -> Image:
    """Gamma correction with the exponent that maps the mean luminance to about 0.45."""
    image = np.clip(_check(image), 0.0, 1.0)
    mean = float(np.clip(_luminance(image).mean(), 1e-4, 1.0 - 1e-4))
    return _finish(image ** (math.log(_GAMMA_TARGET) / math.log(mean)), image)


def clahe(image: Image) -> Image:
    """Contrast-limited adaptive histogram equalisation (on HSV value for RGB), scikit-image defaults."""
    image = np.clip(_check(image), 0.0, 1.0)
    out = exposure.equalize_adapthist(image if image.shape[2] == 3 else image[:, :, 0])
    return _finish(out, image)


def gamma_clahe(image: Image) -> Image:
    """Gamma correction, then CLAHE."""
    return clahe(gamma(image))


# ---------------------------------------------------------------------------------------------- rain, snow


def median3(image: Image) -> Image:
    """3 x 3 median filter per channel."""
    image = _check(image)
    return _finish(ndimage.median_filter(image, size=(3, 3, 1), mode="reflect"), image)


def median5(image: Image) -> Image:
    """5 x 5 median filter per channel."""
    image = _check(image)
    return _finish(ndimage.median_filter(image, size=(5, 5, 1), mode="reflect"), image)


# ---------------------------------------------------------------------------------------------- colour


def gray_world(image: Image) -> Image:
    """Gray-world white balance: scale each channel so its mean equals the mean over channels (no-op for C = 1)."""
    image = _check(image)
    means = image.reshape(-1, image.shape[2]).mean(axis=0)
    gains = means.mean() / np.maximum(means, 1e-6)
    return _finish(image * gains, image)


def gray_world_clahe(image: Image) -> Image:
    """Gray-world white balance, then CLAHE."""
    return clahe(gray_world(image))


def identity(image: Image) -> Image:
    """No restoration: the input itself (a copy)."""
    image = _check(image)
    return _finish(image, image)  # np.clip returns a new array


METHODS: dict[str, Callable[[Image], Image]] = {
    "nl_means": nl_means,
    "wavelet": wavelet,
    "tv": tv,
    "bm3d": bm3d,
    "dark_channel": dark_channel,
    "wiener": wiener,
    "richardson_lucy": richardson_lucy,
    "unsharp": unsharp,
    "gamma": gamma,
    "clahe": clahe,
    "gamma_clahe": gamma_clahe,
    "median3": median3,
    "median5": median5,
    "gray_world": gray_world,
    "gray_world_clahe": gray_world_clahe,
    "identity": identity,
}

_DENOISERS = ("nl_means", "wavelet", "tv", "bm3d")
_DEBLURRERS = ("wiener", "richardson_lucy", "unsharp")
_DERAINERS = ("median3", "median5")

CANDIDATES: dict[str, tuple[str, ...]] = {
    "clean": ("identity",),
    "noise15": _DENOISERS,
    "noise25": _DENOISERS,
    "noise50": _DENOISERS,
    "rain": _DERAINERS,
    "haze": ("dark_channel",),
    "motion_blur": _DEBLURRERS,
    "defocus_blur": _DEBLURRERS,
    "low_light": ("gamma", "clahe", "gamma_clahe"),
    "snow": _DERAINERS,
    "underwater": ("gray_world", "gray_world_clahe"),
    "jpeg": _DENOISERS,
    "random_mix": ("nl_means", "wavelet", "tv", "dark_channel", "gamma_clahe", "median3", "gray_world_clahe",
                   "identity"),
    # Medical (1 channel): denoisers for the noise-like artefacts, plus sharpening for low resolution.
    "mri": (*_DENOISERS, "unsharp"),
    "mri_undersample": _DENOISERS,
    "ct": _DENOISERS,
    "pet": _DENOISERS,
}


def method_available(name: str) -> bool:
    """Whether the method can run here (``bm3d`` needs its optional package)."""
    if name not in METHODS:
        raise UserError(f"unknown baseline method {name!r}; known: {', '.join(METHODS)}")
    return name != "bm3d" or _bm3d_module() is not None


def _to_tensor(image: Image) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)


def score(restored: Image, clean: Image) -> tuple[float, float]:
    """PSNR (dB) and SSIM of one restored image against its clean target, with :mod:`exda.metrics` defaults."""
    pred, target = _to_tensor(restored), _to_tensor(clean)
    return float(psnr(pred, target)[0]), float(ssim(pred, target)[0])


def best_baseline(degradation: str, degraded: list[Image], clean: list[Image]) -> tuple[str, float, float]:
    """Run every available candidate for ``degradation``; (name, mean PSNR, mean SSIM) of the best mean PSNR.

    Ties keep the earlier candidate in :data:`CANDIDATES` order.
    """
    if degradation not in CANDIDATES:
        raise UserError(f"no baselines for degradation {degradation!r}; known: {', '.join(CANDIDATES)}")
    if not degraded or len(degraded) != len(clean):
        raise ValueError(f"need as many clean as degraded images (at least one), got {len(degraded)} and {len(clean)}")
    for y, x in zip(degraded, clean, strict=True):
        if y.shape != x.shape:
            raise ValueError(f"degraded and clean shapes differ: {y.shape} vs {x.shape}")
    best: tuple[str, float, float] | None = None
    for name in CANDIDATES[degradation]:
        if not method_available(name):
            continue
        scores = [score(METHODS[name](y), x) for y, x in zip(degraded, clean, strict=True)]
        mean_psnr = float(np.mean([p for p, _ in scores]))
        mean_ssim = float(np.mean([s for _, s in scores]))
        if best is None or mean_psnr > best[1]:
            best = (name, mean_psnr, mean_ssim)
    assert best is not None  # every candidate list holds at least one always-available method
    return best
