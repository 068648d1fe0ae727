"""Full-reference image quality metrics with the field's conventions (PSNR, SSIM, RMSE).

Conventions (the defaults reproduce PromptIR / AdaIR / MoCE-IR tables):

- Inputs are ``B x C x H x W`` float tensors of the same shape, RGB (or single-channel) in ``[0, 1]``;
  ``data_range`` is 1. Every metric returns one value per image, shape ``(B,)``, computed in float64.
- PSNR = ``10 log10(data_range**2 / MSE)`` over all pixels and channels of an image, as scikit-image's
  ``peak_signal_noise_ratio``; identical images give ``inf``.
- SSIM follows scikit-image's ``structural_similarity(..., channel_axis=-1)``: per-channel SSIM maps
  averaged over the valid region (the border of half a window is dropped) and then over channels.
  ``gaussian=False``: 7x7 uniform window with sample covariance (scikit-image's default).
  ``gaussian=True``: 11x11 gaussian window, sigma 1.5, population covariance
  (``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``; BasicSR, AMIR).
  ``sample_covariance`` overrides the covariance; :data:`SSIM_PROTOCOLS` names the combinations the
  peers use - ``moce_ir`` is MoCE-IR's ``test.py``: ``structural_similarity(gaussian_weights=True,
  data_range=1)`` with scikit-image's default sample covariance (N / (N - 1), N = 121).
- ``y_channel=True`` converts RGB to BT.601 luma as BasicSR/MATLAB do (see :func:`rgb_to_y`); it is a
  no-op for single-channel images. ``crop_border=N`` drops N pixels on each side first (BasicSR).
  Restormer's deraining and WeatherBench report Y-channel numbers (WeatherBench with ``crop_border=4``).
- Medical protocol (AMIR): ``data_range`` may be a ``(B,)`` tensor, one range per image; use
  :func:`medical_metrics`, which takes ``data_range = GT max - min`` per image (see :func:`gt_data_range`)
  with the 11x11 gaussian SSIM, and reports RMSE on the normalised intensities.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

DataRange = float | Tensor

# BT.601 luma weights on [0, 1] RGB, with the 16/255 offset, as BasicSR's rgb2ycbcr(y_only=True).
_Y_WEIGHTS = (65.481, 128.553, 24.966)
_SSIM_K1, _SSIM_K2 = 0.01, 0.03
_UNIFORM_WIN = 7
_GAUSS_SIGMA, _GAUSS_TRUNCATE = 1.5, 3.5


def _check_pair(pred: Tensor, target: Tensor) -> None:
    """Raise ValueError unless both are finite 4-D float tensors of the same shape."""
    for name, t in (("pred", pred), ("target", target)):
        if not isinstance(t, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim != 4:
            raise ValueError(f"{name} must be B x C x H x W, got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a float tensor, got {t.dtype}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or inf")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")


def rgb_to_y(x: Tensor) -> Tensor:
    """BT.601 luma of ``B x 3 x H x W`` RGB in [0, 1]: (16 + 65.481 R + 128.553 G + 24.966 B) / 255."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"rgb_to_y expects B x 3 x H x W, got shape {tuple(x.shape)}")
    w = torch.tensor(_Y_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (16.0 + (x * w).sum(dim=1, keepdim=True)) / 255.0


def _prepare(pred: Tensor, target: Tensor, crop_border: int, y_channel: bool) -> tuple[Tensor, Tensor]:
    """Validate, move to float64, crop the border and optionally take the Y channel."""
    _check_pair(pred, target)
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    pred, target = pred.double(), target.double()
    if crop_border:
        h, w = pred.shape[-2:]
        if 2 * crop_border >= min(h, w):
            raise ValueError(f"crop_border {crop_border} leaves nothing of a {h}x{w} image")
        pred = pred[..., crop_border:-crop_border, crop_border:-crop_border]
        target = target[..., crop_border:-crop_border, crop_border:-crop_border]
    if y_channel and pred.shape[1] == 3:
        pred, target = rgb_to_y(pred), rgb_to_y(target)
    return pred, target


def _per_image_range(data_range: DataRange, batch: int, device: torch.device) -> Tensor:
    """Broadcastable ``(B, 1, 1, 1)`` float64 data range from a scalar or a ``(B,)`` tensor."""
    r = torch.as_tensor(data_range, dtype=torch.float64, device=device).reshape(-1)
    if r.numel() not in (1, batch):
        raise ValueError(f"data_range needs 1 or {batch} values (one per image), got {r.numel()}")
    if bool((r <= 0).any()):
        raise ValueError("data_range must be positive")
    return r.expand(batch).reshape(batch, 1, 1, 1)


def psnr(
    pred: Tensor,
    target: Tensor,
    *,
    data_range: DataRange = 1.0,
    crop_border: int = 0,
    y_channel: bool = False,
) -> Tensor:
    """Peak signal-to-noise ratio in dB per image, shape ``(B,)``; higher is better."""
    pred, target = _prepare(pred, target, crop_border, y_channel)
    r = _per_image_range(data_range, pred.shape[0], pred.device).flatten()
    mse = (pred - target).pow(2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(r.pow(2) / mse)


def rmse(pred: Tensor, target: Tensor, *, crop_border: int = 0) -> Tensor:
    """Root-mean-square error per image, shape ``(B,)``, in the units of the input; lower is better."""
    pred, target = _prepare(pred, target, crop_border, y_channel=False)
    return (pred - target).pow(2).mean(dim=(1, 2, 3)).sqrt()


def _window_1d(gaussian: bool, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Normalised 1-D SSIM window: 7 uniform taps, or 11 gaussian taps (sigma 1.5, truncated at 3.5)."""
    if not gaussian:
        return torch.full((_UNIFORM_WIN,), 1.0 / _UNIFORM_WIN, dtype=dtype, device=device)
    radius = int(_GAUSS_TRUNCATE * _GAUSS_SIGMA + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    g = torch.exp(-0.5 * (x / _GAUSS_SIGMA) ** 2)
    return g / g.sum()


def _filter_valid(x: Tensor, win: Tensor) -> Tensor:
    """Separable local mean over each channel, keeping only positions where the window fits."""
    c = x.shape[1]
    k = win.numel()
    x = F.conv2d(x, win.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(x, win.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def ssim(
    pred: Tensor,
    target: Tensor,
    *,
    data_range: DataRange = 1.0,
    crop_border: int = 0,
    y_channel: bool = False,
    gaussian: bool = False,
    sample_covariance: bool | None = None,
) -> Tensor:
    """Structural similarity per image, shape ``(B,)``, as scikit-image computes it; higher is better.

    ``sample_covariance=None`` takes the window's convention: sample for the uniform window (scikit-image's
    default), population for the gaussian one (BasicSR); True/False forces it (see :data:`SSIM_PROTOCOLS`).
    """
    pred, target = _prepare(pred, target, crop_border, y_channel)
    win = _window_1d(gaussian, pred.dtype, pred.device)
    k = win.numel()
    if min(pred.shape[-2:]) < k:
        raise ValueError(f"SSIM needs images of at least {k}x{k}, got {pred.shape[-2]}x{pred.shape[-1]}")
    if sample_covariance is None:
        sample_covariance = not gaussian
    cov_norm = k * k / (k * k - 1) if sample_covariance else 1.0  # scikit-image: N / (N - 1), N = win_size**2
    r = _per_image_range(data_range, pred.shape[0], pred.device)
    c1, c2 = (_SSIM_K1 * r) ** 2, (_SSIM_K2 * r) ** 2

    mu_x, mu_y = _filter_valid(pred, win), _filter_valid(target, win)
    var_x = cov_norm * (_filter_valid(pred * pred, win) - mu_x * mu_x)
    var_y = cov_norm * (_filter_valid(target * target, win) - mu_y * mu_y)
    cov_xy = cov_norm * (_filter_valid(pred * target, win) - mu_x * mu_y)
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    )
    return ssim_map.mean(dim=(1, 2, 3))


# SSIM as each code base computes it: ssim(pred, target, **SSIM_PROTOCOLS[name]).
SSIM_PROTOCOLS: dict[str, dict[str, bool]] = {
    "skimage": {"gaussian": False, "sample_covariance": True},  # scikit-image defaults (PromptIR val_utils)
    "basicsr": {"gaussian": True, "sample_covariance": False},  # BasicSR's calculate_ssim; AMIR's medical SSIM
    "moce_ir": {"gaussian": True, "sample_covariance": True},  # MoCE-IR test.py: gaussian_weights=True only
}


def gt_data_range(target: Tensor) -> Tensor:
    """Per-image dynamic range ``max - min`` of the ground truth, shape ``(B,)`` (AMIR's data_range)."""
    if target.ndim != 4:
        raise ValueError(f"target must be B x C x H x W, got shape {tuple(target.shape)}")
    flat = target.double().flatten(1)
    # A constant image has no range; fall back to 1 so the metric stays defined.
    span = flat.amax(dim=1) - flat.amin(dim=1)
    return torch.where(span > 0, span, torch.ones_like(span))


def medical_metrics(pred: Tensor, target: Tensor) -> dict[str, Tensor]:
    """AMIR's protocol: PSNR and 11x11 gaussian SSIM with data_range = GT max - min, plus RMSE."""
    r = gt_data_range(target)
    return {
        "psnr": psnr(pred, target, data_range=r),
        "ssim": ssim(pred, target, data_range=r, gaussian=True),
        "rmse": rmse(pred, target),
    }


@dataclass(frozen=True)
class Metric:
    """A named metric that knows its direction and range (as pyiqa metrics do)."""

    name: str
    lower_better: bool
    fn: Callable[..., Tensor]
    bounds: tuple[float, float]

    def __call__(self, pred: Tensor, target: Tensor, **kwargs) -> Tensor:
        return self.fn(pred, target, **kwargs)


METRICS: dict[str, Metric] = {
    "psnr": Metric("psnr", lower_better=False, fn=psnr, bounds=(0.0, math.inf)),
    "ssim": Metric("ssim", lower_better=False, fn=ssim, bounds=(-1.0, 1.0)),
    "rmse": Metric("rmse", lower_better=True, fn=rmse, bounds=(0.0, math.inf)),
}
