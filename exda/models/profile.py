"""Parameter and FLOP counts, and the rows ``exda models`` prints. FLOPs come from
``torch.utils.flop_counter`` (2 x multiply-adds), run on the meta device so no arithmetic is done and even
the full-size models count in seconds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from exda.models.registry import create_model, list_models
from exda.models.restormer import PROMPTS


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


def backbone_of(name: str) -> str | None:
    """``exda_promptir_small`` -> ``promptir_small``: the model an ExDA variant adds its primitives to."""
    return name.removeprefix("exda_") if name.startswith("exda_") else None


def model_rows(size: int = 256, name_filter: str = "") -> Iterator[dict[str, Any]]:
    """One row per registered model, as each is measured: parameters, FLOPs at 1 x C x size x size and,
    for an ExDA variant, its overhead in % over the backbone (PromptIR: the live network without its
    never-called convs). Each network is profiled once (a backbone's figures serve its ExDA variants)."""
    profiled: dict[tuple[str, bool], tuple[int, int]] = {}

    def profile(name: str, live: bool = False) -> tuple[int, int]:
        if (name, live) not in profiled:
            profiled[name, live] = _live_backbone(name, size) if live else profile_model(name, (size, size))
        return profiled[name, live]

    for name in list_models():
        if name_filter not in name:
            continue
        params, flops = profile(name)
        row: dict[str, Any] = {"model": name, "parameters": params, "flops": flops, "backbone": backbone_of(name)}
        if row["backbone"] is not None:
            base_params, base_flops = profile(row["backbone"], live=row["backbone"] == "promptir")
            row["backbone_parameters"], row["backbone_flops"] = base_params, base_flops
            row["params_overhead_pct"] = 100 * (params / base_params - 1)
            row["flops_overhead_pct"] = 100 * (flops / base_flops - 1)
        yield row


def _live_backbone(name: str, size: int) -> tuple[int, int]:
    """Backbone parameters and FLOPs without PromptIR's never-called convolutions."""
    kwargs = {"prompts": PROMPTS["base"]} if name == "promptir" else {}
    return profile_model(name, (size, size), **kwargs)
