"""MRI degradations: k-space undersampling, low resolution and Rician noise on magnitude images."""

from __future__ import annotations

import torch
from torch import Tensor

from exda.degradations.base import Degradation, Params, Stage
from exda.degradations.ops import draw_seed, random_field, uniform
from exda.degradations.registry import register


def cartesian_mask(height: int, acceleration: float, center_fraction: float, seed: int, like: Tensor) -> Tensor:
    """Random Cartesian phase-encoding mask (height lines, 1 = acquired), fastMRI style.

    The central ``center_fraction`` of k-space is always acquired; other lines are taken in a seeded
    random order until ``height / acceleration`` lines are acquired.
    """
    total = max(1, min(height, round(height / max(acceleration, 1.0))))
    center = min(total, max(1, round(height * center_fraction)))
    start = (height - center) // 2
    keep = torch.zeros(height, dtype=torch.bool)
    keep[start:start + center] = True
    scores = random_field((height,), seed, keep).masked_fill(keep, 2.0)  # centre lines excluded from the draw
    keep[torch.argsort(scores)[: total - center]] = True
    return keep.to(like.device)


class MRIUndersample(Degradation):
    """Zero-filled reconstruction |IFFT(M * FFT(x))| with a random Cartesian line mask M.

    ``acceleration`` R keeps 1/R of the lines, ``center_fraction`` = 0.32 / R (fastMRI: 8 % at 4x,
    4 % at 8x). ``strength`` scales R - 1; R is 4..8 at strength 1.
    """

    def __init__(self) -> None:
        super().__init__("mri_undersample", "MRI k-space undersampling: random Cartesian lines, 4..8x acceleration",
                         task="mri_reconstruction", stage=Stage.SENSOR)

    def draw(self, x: Tensor, generator: torch.Generator, strength: float) -> Params:
        acceleration = 1.0 + strength * uniform(generator, 3.0, 7.0)
        return {"acceleration": acceleration, "center_fraction": min(1.0, 0.32 / acceleration),
                "seed": draw_seed(generator)}

    def forward(self, x: Tensor, *, acceleration: float, center_fraction: float, seed: int) -> Tensor:
        mask = cartesian_mask(x.shape[-2], acceleration, center_fraction, seed, x)
        kspace = torch.fft.fftshift(torch.fft.fft2(x, norm="ortho"), dim=-2)
        kspace = kspace * mask.view(1, 1, -1, 1)
        return torch.fft.ifft2(torch.fft.ifftshift(kspace, dim=-2), norm="ortho").abs()


def truncate_kspace(x: Tensor, factor: float) -> Tensor:
    """|IFFT(FFT(x) restricted to the central 1/factor of k-space)|, zero-filled to the input size.

    The kept window is symmetric about DC (frequencies |k| <= (round(n / factor) - 1) // 2 along each
    axis), so a real image gives a real low-resolution image before the magnitude is taken.
    """
    kspace = torch.fft.fft2(x, norm="ortho")
    keep = []
    for n in x.shape[-2:]:
        radius = max(0, (max(1, round(n / factor)) - 1) // 2)
        keep.append(torch.fft.fftfreq(n, d=1.0 / n, device=x.device).abs() <= radius)
    mask = keep[0].view(-1, 1) & keep[1].view(1, -1)
    return torch.fft.ifft2(kspace * mask, norm="ortho").abs().to(x.dtype)


class MRISuperResolution(Degradation):
    """Low-resolution acquisition: only the central 1/``factor`` of k-space along each axis is acquired
    (k-space truncation, as a scanner acquiring fewer phase/frequency encodes), zero-filled back to the
    input size (:func:`truncate_kspace`); the magnitude image keeps the input size and shows MRI's Gibbs
    ringing rather than a bicubic blur. ``factor`` is 2..4 at strength 1 (``strength`` scales factor - 1).
    """

    def __init__(self) -> None:
        super().__init__("mri_sr", "MRI low resolution: k-space truncated to the central 1/2..1/4, zero-filled",
                         task="mri_super_resolution", stage=Stage.OPTICS)

    def draw(self, x: Tensor, generator: torch.Generator, strength: float) -> Params:
        return {"factor": 1.0 + strength * uniform(generator, 1.0, 3.0)}

    def forward(self, x: Tensor, *, factor: float) -> Tensor:
        if factor <= 1.0:
            return x
        return truncate_kspace(x, factor)


class RicianNoise(Degradation):
    """Magnitude-image noise: y = |x + sigma (n1 + i n2)|, n1, n2 ~ N(0, 1) (Rician distributed).

    ``sigma`` (fraction of full scale) is 2..6 % at strength 1 and scales with ``strength``.
    """

    def __init__(self) -> None:
        super().__init__("mri_noise", "MRI Rician noise on the magnitude image, sigma 2..6 % of full scale",
                         task="mri_denoise", stage=Stage.SENSOR)

    def draw(self, x: Tensor, generator: torch.Generator, strength: float) -> Params:
        return {"sigma": strength * uniform(generator, 0.02, 0.06), "seed": draw_seed(generator)}

    def forward(self, x: Tensor, *, sigma: float, seed: int) -> Tensor:
        noise = random_field((2, *x.shape), seed, x, normal=True)
        return torch.hypot(x + sigma * noise[0], sigma * noise[1])


register(MRIUndersample())
register(MRISuperResolution())
register(RicianNoise())
