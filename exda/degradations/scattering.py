"""Participating media: atmospheric haze and underwater attenuation, both I = J t + B (1 - t)."""

from __future__ import annotations

import torch
from torch import Tensor

from exda.degradations.base import Degradation, Params, Stage
from exda.degradations.ops import check_depth, depth_proxy, uniform
from exda.degradations.registry import register


def _depth(x: Tensor, depth: Tensor | None) -> Tensor:
    return depth_proxy(x) if depth is None else check_depth(depth, x)


class Haze(Degradation):
    """Koschmieder's model I = J t + A (1 - t), t = exp(-beta d), with a grey airlight A.

    ``d`` is the optional ``depth`` map passed to ``apply`` (beta is per its unit), otherwise the
    relative depth proxy of :func:`exda.degradations.ops.depth_proxy` in [0, 1]. ``strength`` scales beta.
    """

    uses_depth = True

    def __init__(self) -> None:
        super().__init__("haze", "haze: I = J t + A (1 - t), t = exp(-beta d), depth proxy or given depth map",
                         task="dehaze", stage=Stage.MEDIUM)

    def draw(self, x: Tensor, generator: torch.Generator, strength: float) -> Params:
        return {"beta": uniform(generator, 0.6, 1.8) * strength, "airlight": uniform(generator, 0.75, 0.95)}

    def forward(self, x: Tensor, *, beta: float, airlight: float, depth: Tensor | None = None) -> Tensor:
        t = torch.exp(-beta * _depth(x, depth))
        return x * t + airlight * (1.0 - t)


class Underwater(Degradation):
    """Underwater image formation: I_c = J_c t_c + B_c (1 - t_c), t_c = exp(-beta_c D).

    Attenuation is strongest for red, then green, then blue (red is lost first); the backscatter B gives
    the blue-green cast. D (metres) = ``distance`` * (0.3 + 0.7 d) with d the optional ``depth`` map or
    the relative depth proxy. A one-channel image uses the luma-weighted mean coefficients.
    ``strength`` scales the distance.
    """

    uses_depth = True
    _LUMA = (0.299, 0.587, 0.114)

    def __init__(self) -> None:
        super().__init__("underwater", "underwater: red-first attenuation exp(-beta_c D) plus blue-green backscatter",
                         task="underwater", stage=Stage.MEDIUM)

    def draw(self, x: Tensor, generator: torch.Generator, strength: float) -> Params:
        attenuation = [uniform(generator, 0.3, 0.6), uniform(generator, 0.06, 0.15), uniform(generator, 0.03, 0.1)]
        backscatter = [uniform(generator, 0.0, 0.15), uniform(generator, 0.3, 0.55), uniform(generator, 0.35, 0.65)]
        return {"distance": uniform(generator, 2.0, 6.0) * strength, "attenuation": attenuation,
                "backscatter": backscatter}

    def forward(self, x: Tensor, *, distance: float, attenuation: list[float], backscatter: list[float],
                depth: Tensor | None = None) -> Tensor:
        beta = torch.tensor(attenuation, device=x.device, dtype=x.dtype)
        veil = torch.tensor(backscatter, device=x.device, dtype=x.dtype)
        if x.shape[1] == 1:
            luma = torch.tensor(self._LUMA, device=x.device, dtype=x.dtype)
            beta, veil = (beta * luma).sum(0, keepdim=True), (veil * luma).sum(0, keepdim=True)
        metres = distance * (0.3 + 0.7 * _depth(x, depth))
        t = torch.exp(-beta.view(1, -1, 1, 1) * metres)
        return x * t + veil.view(1, -1, 1, 1) * (1.0 - t)


register(Haze())
register(Underwater())
