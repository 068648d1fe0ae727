"""Rain streaks and falling snow: procedural layers composited over the scene."""

from __future__ import annotations

import torch
from torch import Tensor

from exda.degradations.base import Degradation, Params, Stage
from exda.degradations.ops import draw_seed, filter2d, gaussian_blur, line_kernel, random_field, uniform
from exda.degradations.registry import register


class RainStreaks(Degradation):
    """Rain100L-like light rain: one layer of parallel streaks, screen-blended: y = 1 - (1 - x)(1 - R).

    Streak seeds are pixels whose uniform draw falls below ``density``, so a denser draw of the same
    seed adds streaks without moving the others. ``strength`` scales density and opacity.
    """

    def __init__(self) -> None:
        super().__init__("rain", "rain streaks (Rain100L-like): density, angle, length, width, blur; screen blend",
                         task="derain", stage=Stage.WEATHER)

    def draw(self, x: Tensor, generator: torch.Generator, strength: float) -> Params:
        return {
            "seed": draw_seed(generator),
            "density": uniform(generator, 0.002, 0.006) * strength,  # fraction of pixels that start a streak
            "angle": uniform(generator, -20.0, 20.0),  # degrees from vertical
            "length": uniform(generator, 12.0, 30.0),  # pixels
            "width": uniform(generator, 0.5, 0.9),  # Gaussian sigma of the cross-section, pixels
            "blur": uniform(generator, 0.3, 1.0),  # defocus of the rain layer, pixels
            "opacity": min(1.0, uniform(generator, 0.4, 0.7) * strength),
        }

    def forward(self, x: Tensor, *, seed: int, density: float, angle: float, length: float, width: float,
                blur: float, opacity: float) -> Tensor:
        b, _, h, w = x.shape
        field = random_field((2, b, 1, h, w), seed, x)
        drops = (field[0] < density).float() * (0.6 + 0.4 * field[1])
        layer = gaussian_blur(filter2d(drops, line_kernel(length, angle, width)), blur)
        rain = (layer * opacity).clamp(0.0, 1.0)
        return 1.0 - (1.0 - x) * (1.0 - rain)


class Snow(Degradation):
    """Falling snow: three layers of flakes (near: few, large, long motion; far: many, small), a veil.

    y = (x (1 - v) + v * w) (1 - S) + S, where v is the veil (scattering by the snowfall), w its
    whiteness and S the screen-combined flake layers. ``strength`` scales flake density and the veil.
    """

    _LAYERS = 3
    _SCALE = 0.55  # each farther layer: flakes and motion this much smaller, 1 / _SCALE**1.5 as many

    def __init__(self) -> None:
        super().__init__("snow", "snow: flakes in three depth layers with wind motion, plus a whitish veil",
                         task="desnow", stage=Stage.WEATHER)

    def draw(self, x: Tensor, generator: torch.Generator, strength: float) -> Params:
        return {
            "seed": draw_seed(generator),
            "density": uniform(generator, 0.0008, 0.0025) * strength,  # near-layer flakes per pixel
            "flake_size": uniform(generator, 1.2, 2.4),  # near-layer Gaussian sigma, pixels
            "angle": uniform(generator, -35.0, 35.0),  # wind: degrees from vertical
            "motion": uniform(generator, 0.0, 8.0),  # near-layer motion streak length, pixels
            "veil": min(0.9, uniform(generator, 0.05, 0.15) * strength),
            "whiteness": uniform(generator, 0.8, 0.95),
        }

    def forward(self, x: Tensor, *, seed: int, density: float, flake_size: float, angle: float, motion: float,
                veil: float, whiteness: float) -> Tensor:
        b, _, h, w = x.shape
        field = random_field((self._LAYERS, 2, b, 1, h, w), seed, x)
        clear = torch.ones((b, 1, h, w), device=x.device)
        for level in range(self._LAYERS):
            scale = self._SCALE**level
            flakes = (field[level, 0] < density / scale**1.5).float() * (0.7 + 0.3 * field[level, 1])
            layer = filter2d(flakes, line_kernel(motion * scale, angle, flake_size * scale))
            clear = clear * (1.0 - layer.clamp(0.0, 1.0))
        snow = 1.0 - clear
        veiled = x * (1.0 - veil) + veil * whiteness
        return veiled * (1.0 - snow) + snow


register(RainStreaks())
register(Snow())
