"""Participating media: atmospheric haze and underwater attenuation, both I = J t + B (1 - t)."""

from __future__ import annotations

import torch
from torch import Tensor

from exda.degradations.base import Degradation, Params, Stage
from exda.degradations.ops import check_depth, choice, depth_proxy, uniform
from exda.degradations.registry import register


def _depth(x: Tensor, depth: Tensor | None) -> Tensor:
    """Relative depth in [0, 1]: the proxy, or the given map. A metric map (maximum above 1, e.g. metres
    from a depth sensor or NYU/KITTI) is divided by its per-image maximum: beta, and underwater's near..far
    range, are per unit of relative depth, and beta ~ 1 over tens of metres would give pure airlight."""
    if depth is None:
        return depth_proxy(x)
    d = check_depth(depth, x)
    peak = d.amax(dim=(-2, -1), keepdim=True)
    return torch.where(peak > 1.0, d / peak, d)


class Haze(Degradation):
    """Koschmieder's model I = J t + A (1 - t), t = exp(-beta d), with a grey airlight A.

    ``d`` is the optional ``depth`` map passed to ``apply`` (one in [0, 1] is used as it is; a metric one is
    divided by its maximum), otherwise the relative depth proxy of :func:`exda.degradations.ops.depth_proxy`
    in [0, 1]. ``strength`` scales beta.
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


# Jerlov water types: diffuse attenuation (1/m) for the camera's red, green and blue bands, rounded from
# the Kd spectra of Solonenko & Mobley (2015) near 600, 525 and 475 nm (red raised towards 620 nm, where
# water absorbs more). Open ocean (I-III) keeps blue longest; coastal water (1C-5C) loses blue to
# dissolved organic matter and turns green. Approximate: real coefficients vary with the camera.
JERLOV_TYPES: dict[str, tuple[float, float, float]] = {
    "I": (0.30, 0.055, 0.025),
    "II": (0.33, 0.080, 0.055),
    "III": (0.37, 0.120, 0.100),
    "1C": (0.40, 0.140, 0.190),
    "3C": (0.48, 0.230, 0.340),
    "5C": (0.60, 0.340, 0.550),
}
_LUMA = (0.299, 0.587, 0.114)


class Underwater(Degradation):
    """Revised underwater image formation model (Akkaynak & Treibitz, CVPR 2018), per colour channel c:

        I_c = E_c / max(E) * [J_c exp(-beta^D_c z) + B_c (1 - exp(-beta^B_c z))],  E_c = exp(-K_c D_w)

    The direct signal decays with the range z (metres) at beta^D_c, the backscatter grows towards the
    veiling light B_c = ``veil`` at beta^B_c, a separate coefficient as in the revised model. Ambient light
    at the scene's water depth D_w has lost red first (E_c); the camera's exposure follows the strongest
    channel. z = ``near`` + (``far`` - ``near``) d with d the optional ``depth`` map or the relative depth
    proxy, so colour loss grows with distance. Coefficients are drawn +-15 % around a Jerlov water type
    (``water_type`` names it; the drawn numbers are in the params). A one-channel image is degraded as
    gray RGB and returned as luma. ``strength`` scales the ranges and the water depth (0 = identity).
    """

    uses_depth = True
    casts_colour = True

    def __init__(self) -> None:
        super().__init__("underwater", "underwater: revised formation model (Akkaynak-Treibitz), Jerlov water "
                         "types, attenuation and backscatter growing with distance",
                         task="underwater", stage=Stage.MEDIUM)

    def draw(self, x: Tensor, generator: torch.Generator, strength: float) -> Params:
        water_type = choice(generator, list(JERLOV_TYPES))
        jitter = [uniform(generator, 0.85, 1.15) for _ in range(3)]
        direct = [round(k * j, 5) for k, j in zip(JERLOV_TYPES[water_type], jitter, strict=True)]
        ratio = uniform(generator, 0.7, 1.0)  # beta^B / beta^D
        near, far = uniform(generator, 0.5, 2.0), uniform(generator, 4.0, 10.0)
        return {
            "water_type": water_type,
            "attenuation": direct,
            "backscatter_attenuation": [round(k * ratio, 5) for k in direct],
            "near": near * strength,
            "far": far * strength,
            "water_depth": uniform(generator, 1.0, 6.0) * strength,
            "veil": uniform(generator, 0.45, 0.75),
        }

    def forward(self, x: Tensor, *, water_type: str, attenuation: list[float], backscatter_attenuation: list[float],
                near: float, far: float, water_depth: float, veil: float, depth: Tensor | None = None) -> Tensor:
        gray = x.shape[1] == 1
        rgb = x.expand(-1, 3, -1, -1) if gray else x

        def per_channel(values: list[float]) -> Tensor:
            return torch.tensor(values, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)

        beta_d, beta_b = per_channel(attenuation), per_channel(backscatter_attenuation)
        ambient = torch.exp(-beta_d * water_depth)
        ambient = ambient / ambient.amax()
        z = near + (far - near) * _depth(x, depth)
        y = ambient * (rgb * torch.exp(-beta_d * z) + veil * (1.0 - torch.exp(-beta_b * z)))
        return (y * per_channel(list(_LUMA))).sum(1, keepdim=True) if gray else y


register(Haze())
register(Underwater())
