"""Parameter and FLOP counts. FLOPs come from ``torch.utils.flop_counter`` (2 x multiply-adds),
run on the meta device so no arithmetic is done and even the full-size models count in seconds."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from exda.models.registry import create_model


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def profile_model(name: str, size: tuple[int, int] = (256, 256), **kwargs) -> tuple[int, int]:
    """(parameters, FLOPs of one forward pass on 1 x C x H x W) of a registered model."""
    with torch.device("meta"):
        model = create_model(name, **kwargs)
        x = torch.empty(1, model.in_channels, *size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return count_parameters(model), counter.get_total_flops()
