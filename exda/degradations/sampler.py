"""The seeded sampler: draws a degradation's parameters with its own generator, then applies it."""

from __future__ import annotations

import torch
from torch import Tensor

from exda.degradations.base import Degradation, Params, check_strength
from exda.degradations.registry import get_degradation


class DegradationSampler:
    """Draws parameters with its own seeded CPU generator, then applies the degradation.

    ``y, params = sampler(x)``; ``params`` replays exactly with ``sampler.degradation.apply(x, **params)``.
    """

    def __init__(self, name_or_degradation: str | Degradation, seed: int = 0, strength: float = 1.0) -> None:
        if isinstance(name_or_degradation, Degradation):
            self.degradation = name_or_degradation
        else:
            self.degradation = get_degradation(name_or_degradation)
        self.seed = int(seed)
        self.strength = check_strength(strength)
        self.generator = torch.Generator().manual_seed(self.seed)

    def __call__(self, x: Tensor) -> tuple[Tensor, Params]:
        params = self.degradation.sample_params(x, self.generator, self.strength)
        return self.degradation.apply(x, **params), params
