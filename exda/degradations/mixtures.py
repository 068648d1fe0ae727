"""Mixed degradations: ordered compositions, the CDD-11 combinations and random unknown mixtures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from exda.degradations import blur, jpeg, low_light, mri, noise, scattering, weather  # noqa: F401 (the parts)
from exda.degradations.base import Degradation, Params
from exda.degradations.ops import choice
from exda.degradations.registry import get_degradation, register, register_alias
from exda.errors import UserError


class Compose(Degradation):
    """Several degradations applied in physical order (medium -> weather -> light -> optics -> sensor -> jpeg).

    Params are ``{"steps": [{"name": ..., "params": {...}}, ...]}``: ``apply`` replays every step by its
    registered name, so a stored list reproduces the image exactly. A ``depth`` map given to ``apply``
    goes to the steps that use one (haze, underwater).
    """

    uses_depth = True

    def __init__(self, name: str, parts: Sequence[Degradation], description: str = "", task: str = "") -> None:
        ordered = sorted(parts, key=lambda part: part.stage)  # stable: equal stages keep the given order
        description = description or "mixture: " + " -> ".join(part.name for part in ordered)
        super().__init__(name, description, task or name, stage=ordered[0].stage)
        self.parts = tuple(ordered)

    def draw(self, x: Tensor, generator: torch.Generator, strength: float) -> Params:
        return {"steps": [{"name": p.name, "params": p.draw(x, generator, strength)} for p in self.parts]}

    def forward(self, x: Tensor, *, steps: list[dict[str, Any]], depth: Tensor | None = None) -> Tensor:
        for step in steps:
            if not isinstance(step, dict) or set(step) != {"name", "params"}:
                raise UserError(f"a mixture step must be {{'name': ..., 'params': {{...}}}}, got {step!r}")
            part = get_degradation(step["name"])
            extra = {"depth": depth} if part.uses_depth and depth is not None else {}
            x = part.apply(x, **step["params"], **extra)
        return x


# Natural-image degradation groups for unknown mixtures: at most one member of a group per image.
MIX_GROUPS: tuple[tuple[str, ...], ...] = (
    ("haze",), ("rain", "snow"), ("low_light",), ("motion_blur", "defocus_blur"), ("noise",), ("jpeg",),
)


class RandomMix(Compose):
    """An unknown mixture: 1..3 natural-image degradations from distinct groups, composed in physical order.

    The params record which degradations were drawn (the ``steps`` list), so a sample replays exactly.
    """

    def __init__(self) -> None:
        parts = [get_degradation(name) for group in MIX_GROUPS for name in group]
        super().__init__("random_mix", parts, task="mixed",
                         description="unknown mixture: 1..3 of haze, rain|snow, low light, blur, noise, jpeg")

    def draw(self, x: Tensor, generator: torch.Generator, strength: float) -> Params:
        count = choice(generator, (1, 2, 3))
        order = torch.randperm(len(MIX_GROUPS), generator=generator, device=generator.device).tolist()
        picked = [get_degradation(choice(generator, MIX_GROUPS[g])) for g in sorted(order[:count])]
        picked.sort(key=lambda part: part.stage)
        return {"steps": [{"name": p.name, "params": p.draw(x, generator, strength)} for p in picked]}


# CDD-11 (OneRestore): "low" is low light; single-degradation subsets are the plain degradations.
CDD11: tuple[str, ...] = (
    "low", "haze", "rain", "snow", "low_haze", "low_rain", "low_snow", "haze_rain", "haze_snow",
    "low_haze_rain", "low_haze_snow",
)

register_alias("low", "low_light")
for _name in CDD11:
    if "_" in _name:
        _parts = [get_degradation(part) for part in _name.split("_")]
        register(Compose(_name, _parts, description=f"CDD-11 mixture {_name}: "
                         + " -> ".join(p.name for p in sorted(_parts, key=lambda p: p.stage))))
register(Compose("mri", [get_degradation("mri_sr"), get_degradation("mri_noise")],
                 description="MRI default: x2..x4 low resolution, then Rician noise", task="mri"))
register(RandomMix())
