"""The identity "degradation": clean inputs in a training mix teach a model to leave clean photos alone."""

from __future__ import annotations

import torch
from torch import Tensor

from exda.degradations.base import Degradation, Params, Stage
from exda.degradations.registry import register


class Clean(Degradation):
    """y = x. Draws no parameters; ``strength`` has nothing to scale."""

    def __init__(self) -> None:
        super().__init__("clean", "no degradation (identity): clean input pairs", task="clean",
                         stage=Stage.COMPRESSION)

    def draw(self, x: Tensor, generator: torch.Generator, strength: float) -> Params:
        return {}

    def forward(self, x: Tensor) -> Tensor:
        return x.clone()


register(Clean())
