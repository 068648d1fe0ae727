"""Low light (LOL-like): short exposure and a darkening tone curve, then sensor shot and read noise."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from exda.degradations.base import Degradation, Params, Stage
from exda.degradations.ops import draw_seed, random_field, uniform
from exda.degradations.registry import register


class LowLight(Degradation):
    """y = e * x**gamma + n, n ~ N(0, shot * y + read**2): heteroscedastic (Poisson-Gaussian) noise.

    ``exposure`` e < 1 and ``gamma`` > 1 darken mid-tones more than highlights, as in under-exposed
    shots; the noise variance grows with the signal (shot) on top of a floor (read). ``strength``
    deepens the exposure cut (log scale), raises gamma and the noise.
    """

    def __init__(self) -> None:
        super().__init__("low_light", "low light: exposure cut and gamma, plus signal-dependent shot + read noise",
                         task="low_light", stage=Stage.ILLUMINATION)

    def draw(self, x: Tensor, generator: torch.Generator, strength: float) -> Params:
        return {
            "exposure": math.exp(-strength * uniform(generator, math.log(2.5), math.log(6.0))),
            "gamma": 1.0 + strength * uniform(generator, 0.1, 0.5),
            "shot": strength * uniform(generator, 2e-4, 2e-3),
            "read": strength * uniform(generator, 2e-3, 1e-2),
            "seed": draw_seed(generator),
        }

    def forward(self, x: Tensor, *, exposure: float, gamma: float, shot: float, read: float, seed: int) -> Tensor:
        dark = exposure * x.clamp_min(0.0) ** gamma
        std = torch.sqrt(shot * dark + read**2)
        return dark + std * random_field(x.shape, seed, x, normal=True)


register(LowLight())
