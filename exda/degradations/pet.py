"""Low-count PET: Poisson counts at a reduced dose behind a noiseless full-dose image."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from exda.degradations.base import Degradation, Params, Stage
from exda.degradations.ops import draw_seed, make_generator, uniform
from exda.degradations.registry import register


class LowCountPET(Degradation):
    """Reduced injected dose / scan time: y = Poisson(x * counts * dose_fraction) / (counts * dose_fraction).

    The clean image is a noiseless full-dose map, so the low-dose counts are Poisson with mean
    x * ``counts`` * ``dose_fraction`` and are sampled directly. (Binomially thinning rounded full-dose
    counts would give Poisson statistics only if the full-dose counts were Poisson themselves; from a
    noiseless map it gives (1 - dose_fraction) of the variance, 5-25 % too little at these doses.)
    ``dose_fraction`` is 1/4..1/20 at strength 1 (``strength`` scales its log).
    """

    def __init__(self) -> None:
        super().__init__("pet", "low-count PET: Poisson counts at a 1/4..1/20 dose, rescaled",
                         task="low_count_pet", stage=Stage.SENSOR)

    def draw(self, x: Tensor, generator: torch.Generator, strength: float) -> Params:
        return {
            "counts": uniform(generator, 200.0, 1000.0),  # full-dose counts at pixel value 1
            "dose_fraction": math.exp(-strength * uniform(generator, math.log(4.0), math.log(20.0))),
            "seed": draw_seed(generator),
        }

    def forward(self, x: Tensor, *, counts: float, dose_fraction: float, seed: int) -> Tensor:
        scale = counts * dose_fraction
        rate = (x.detach().cpu().double().clamp_min(0.0) * scale)
        low_dose = torch.poisson(rate, generator=make_generator(seed))
        return (low_dose / scale).to(x.device, x.dtype)


register(LowCountPET())
