"""Additive white Gaussian noise on 8-bit levels, the BSD68 / CBSD68 denoising protocol."""

from __future__ import annotations

import torch
from torch import Tensor

from exda.degradations.base import Degradation, Params, Stage
from exda.degradations.ops import choice, draw_seed, random_field
from exda.degradations.registry import register

BENCHMARK_SIGMAS: tuple[int, ...] = (15, 25, 50)


class GaussianNoise(Degradation):
    """y = floor(clip(255 x + sigma n, 0, 255)) / 255 with n ~ N(0, 1); sigma in 0..255 units.

    Truncated, not rounded, to 8 bits: the peers' code (PromptIR, AdaIR, AirNet, MoCE-IR) makes its noisy
    images with ``np.clip(clean + noise * sigma, 0, 255).astype(np.uint8)``, in training and at test time.

    ``sigma=None`` draws it from the benchmark set {15, 25, 50}; a fixed sigma gives the per-level
    protocol names. ``strength`` multiplies sigma.
    """

    def __init__(self, name: str, description: str, sigma: float | None = None) -> None:
        super().__init__(name, description, task="denoise", stage=Stage.SENSOR)
        self.sigma = sigma

    def draw(self, x: Tensor, generator: torch.Generator, strength: float) -> Params:
        sigma = choice(generator, BENCHMARK_SIGMAS) if self.sigma is None else self.sigma
        return {"sigma": float(sigma) * strength, "seed": draw_seed(generator)}

    def forward(self, x: Tensor, *, sigma: float, seed: int) -> Tensor:
        noise = random_field(x.shape, seed, x, normal=True)
        return torch.floor((x * 255.0 + sigma * noise).clamp(0.0, 255.0)) / 255.0  # astype(uint8)


register(GaussianNoise("noise", "Gaussian noise, sigma drawn from {15, 25, 50} (0..255 units), 8-bit output"))
for _sigma in BENCHMARK_SIGMAS:
    register(GaussianNoise(f"noise{_sigma}", f"Gaussian noise, sigma {_sigma} (BSD68 protocol), 8-bit output",
                           sigma=_sigma))
