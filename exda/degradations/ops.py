"""Small building blocks shared by the degradation operators: seeded draws, filtering, depth proxy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

from exda.errors import UserError

T = TypeVar("T")
_SEED_BOUND = 2**31 - 1


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator: random fields are drawn on CPU so CPU and CUDA runs see the same field."""
    return torch.Generator().manual_seed(int(seed))


def draw_seed(generator: torch.Generator) -> int:
    """A fresh integer seed for an operator's own random field."""
    return int(torch.randint(0, _SEED_BOUND, (1,), generator=generator, device=generator.device))


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    """One float drawn uniformly from [low, high)."""
    u = float(torch.rand(1, generator=generator, device=generator.device, dtype=torch.float64))
    return low + (high - low) * u


def choice(generator: torch.Generator, options: Sequence[T]) -> T:
    """One element of ``options``, uniformly."""
    index = int(torch.randint(0, len(options), (1,), generator=generator, device=generator.device))
    return options[index]


def random_field(shape: Sequence[int], seed: int, like: Tensor, normal: bool = False) -> Tensor:
    """Uniform [0, 1) (or standard normal) values drawn on CPU from ``seed``, moved to ``like``'s device."""
    generator = make_generator(seed)
    draw = torch.randn if normal else torch.rand
    return draw(tuple(shape), generator=generator, dtype=torch.float32).to(like.device)


def _reflect_pad(x: Tensor, pad_h: int, pad_w: int) -> Tensor:
    """Reflect padding of any width: repeated reflections when the pad exceeds the image size."""
    while pad_h > 0 or pad_w > 0:
        step_h, step_w = min(pad_h, x.shape[-2] - 1), min(pad_w, x.shape[-1] - 1)
        x = F.pad(x, (step_w, step_w, step_h, step_h), mode="reflect")
        pad_h, pad_w = pad_h - step_h, pad_w - step_w
    return x


def filter2d(x: Tensor, kernel: Tensor) -> Tensor:
    """Convolve every channel of B x C x H x W ``x`` with one odd-sized 2-D kernel; reflect padding, same size."""
    b, c, h, w = x.shape
    kh, kw = kernel.shape
    padded = _reflect_pad(x.reshape(b * c, 1, h, w), kh // 2, kw // 2)
    weight = kernel.to(x.device, x.dtype).flip(0, 1)[None, None]  # flip: true convolution, not correlation
    return F.conv2d(padded, weight).reshape(b, c, h, w)


def gaussian_kernel1d(sigma: float) -> Tensor:
    """Normalised 1-D Gaussian of odd length covering +-3 sigma."""
    radius = max(1, math.ceil(3.0 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (t / max(sigma, 1e-6)) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur with reflect padding; ``sigma <= 0`` returns ``x`` unchanged."""
    if sigma <= 0:
        return x
    k = gaussian_kernel1d(sigma)
    return filter2d(filter2d(x, k[None, :]), k[:, None])


def line_kernel(length: float, angle_deg: float, width: float) -> Tensor:
    """A soft line segment (peak 1): Gaussian cross-section ``width`` (sigma, px), ``angle`` from vertical.

    Used for rain streaks and moving snow flakes; ``length`` 0 gives a round Gaussian blob.
    """
    width = max(width, 0.3)
    radius = math.ceil(length / 2 + 3 * width)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    angle = math.radians(angle_deg)
    dy, dx = math.cos(angle), math.sin(angle)
    along = (yy * dy + xx * dx).clamp(-length / 2, length / 2)
    dist2 = (yy - along * dy) ** 2 + (xx - along * dx) ** 2
    taper = 1.0 - 0.6 * (2 * along / max(length, 1e-6)) ** 2  # streaks fade towards their ends
    return torch.exp(-0.5 * dist2 / width**2) * taper


def luminance(x: Tensor) -> Tensor:
    """Rec. 601 luma of B x C x H x W as B x 1 x H x W (C = 1 is returned as is)."""
    if x.shape[1] == 1:
        return x
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def depth_proxy(x: Tensor) -> Tensor:
    """A relative scene depth in [0, 1] (0 = the nearest point of the image, 1 = the farthest).

    Outdoor photos tend to be far at the top (sky, horizon) and near at the bottom, and bright smooth
    regions are often sky or distant; so depth = 0.65 * (1 - row / (H - 1)) + 0.35 * blurred luminance,
    with the luminance blurred at sigma = 5 % of the image size so texture does not become depth. Each
    image is then stretched to span [0, 1], so near and far always differ by the whole range.
    """
    b, _, h, w = x.shape
    rows = torch.linspace(1.0, 0.0, h, device=x.device, dtype=x.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
    smooth = gaussian_blur(luminance(x), 0.05 * max(h, w))
    depth = 0.65 * rows + 0.35 * smooth
    low = depth.amin(dim=(1, 2, 3), keepdim=True)
    high = depth.amax(dim=(1, 2, 3), keepdim=True)
    return ((depth - low) / (high - low).clamp_min(1e-6)).clamp(0.0, 1.0)


def check_depth(depth: Tensor, x: Tensor) -> Tensor:
    """Validate a user depth map (H x W, 1 x H x W or B/1 x 1 x H x W) and return it as B x 1 x H x W."""
    b, _, h, w = x.shape
    d = depth.to(x.device, x.dtype)
    while d.ndim < 4:
        d = d.unsqueeze(0)
    if d.shape[1:] != (1, h, w) or d.shape[0] not in (1, b):
        raise UserError(f"depth map shape {tuple(depth.shape)} does not match the image size {h}x{w}")
    return d.clamp_min(0.0).expand(b, 1, h, w)
