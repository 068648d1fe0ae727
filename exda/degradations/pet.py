"""Low-count PET: binomial thinning of the counts behind a full-dose image."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from exda.degradations.base import Degradation, Params, Stage
from exda.degradations.ops import draw_seed, make_generator, uniform
from exda.degradations.registry import register


class LowCountPET(Degradation):
    """Reduced injected dose / scan time simulated by thinning counts.

    The clean image is read as a full-dose count map N = round(x * ``counts``); each count is kept with
    probability ``dose_fraction`` (binomial thinning, which turns Poisson data into Poisson data of the
    lower mean); the result is rescaled by 1 / (counts * dose_fraction). An image-domain approximation of
    list-mode thinning. ``dose_fraction`` is 1/4..1/20 at strength 1 (``strength`` scales its log).
    """

    def __init__(self) -> None:
        super().__init__("pet", "low-count PET: binomial thinning of counts to a 1/4..1/20 dose, rescaled",
                         task="low_count_pet", stage=Stage.SENSOR)

    def draw(self, x: Tensor, generator: torch.Generator, strength: float) -> Params:
        return {
            "counts": uniform(generator, 200.0, 1000.0),  # full-dose counts at pixel value 1
            "dose_fraction": math.exp(-strength * uniform(generator, math.log(4.0), math.log(20.0))),
            "seed": draw_seed(generator),
        }

    def forward(self, x: Tensor, *, counts: float, dose_fraction: float, seed: int) -> Tensor:
        full = torch.round(x.detach().cpu().clamp_min(0.0) * counts)
        probability = torch.full_like(full, min(max(dose_fraction, 0.0), 1.0))
        kept = torch.binomial(full, probability, generator=make_generator(seed))
        return (kept / (counts * dose_fraction)).to(x.device, torch.float32)


register(LowCountPET())
