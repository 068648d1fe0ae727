"""Blur: camera shake along a random trajectory, and out-of-focus (disk or Gaussian) blur."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from exda.degradations.base import Degradation, Params, Stage
from exda.degradations.ops import choice, draw_seed, filter2d, gaussian_blur, make_generator, uniform
from exda.degradations.registry import register


def shake_trajectory(seed: int, steps: int = 64) -> np.ndarray:
    """A random camera path (steps x 2, pixels, arbitrary scale) in the spirit of Boracchi & Foi (2012).

    The velocity wanders (Gaussian perturbations), is pulled back towards the start (inertia of a hand
    holding the camera) and sometimes jumps (an abrupt shake).
    """
    g = make_generator(seed)
    kicks = torch.randn(steps, 2, generator=g, dtype=torch.float64).numpy()
    jumps = torch.rand(steps, generator=g, dtype=torch.float64).numpy()
    heading = float(torch.rand(1, generator=g, dtype=torch.float64)) * 2 * math.pi
    velocity = np.array([math.cos(heading), math.sin(heading)])
    position = np.zeros(2)
    path = np.empty((steps, 2))
    for i in range(steps):
        velocity = velocity + 0.2 * kicks[i] - 0.01 * position
        if jumps[i] < 0.02:
            velocity = velocity + 1.0 * kicks[(i + steps // 2) % steps]
        velocity = velocity / max(np.linalg.norm(velocity), 1e-9)
        position = position + velocity
        path[i] = position
    return path


def trajectory_kernel(path: np.ndarray, length: float) -> Tensor:
    """Rasterise a path, scaled so its larger extent is ``length`` pixels, into a normalised PSF."""
    pts = path - (path.max(0) + path.min(0)) / 2
    extent = float((path.max(0) - path.min(0)).max())
    pts = pts * (length / extent if extent > 0 else 0.0)
    radius = math.ceil(length / 2) + 1
    size = 2 * radius + 1
    kernel = np.zeros((size, size))
    coords = pts + radius  # (x, y) -> kernel columns, rows
    base = np.floor(coords).astype(int)
    frac = coords - base
    for dy in (0, 1):  # bilinear splatting of every path point
        for dx in (0, 1):
            weight = (frac[:, 0] if dx else 1 - frac[:, 0]) * (frac[:, 1] if dy else 1 - frac[:, 1])
            np.add.at(kernel, (base[:, 1] + dy, base[:, 0] + dx), weight)
    return torch.from_numpy(kernel / kernel.sum()).float()


def disk_kernel(radius: float, supersample: int = 8) -> Tensor:
    """Anti-aliased uniform disk (pillbox) PSF of the given radius in pixels, normalised."""
    r = math.ceil(radius)
    offsets = (torch.arange(supersample, dtype=torch.float32) + 0.5) / supersample - 0.5
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    fine = (t[:, None] + offsets[None, :]).reshape(-1)
    yy, xx = torch.meshgrid(fine, fine, indexing="ij")
    inside = ((yy**2 + xx**2) <= max(radius, 0.5) ** 2).float()
    kernel = inside.reshape(2 * r + 1, supersample, 2 * r + 1, supersample).mean(dim=(1, 3))
    return kernel / kernel.sum()


class MotionBlur(Degradation):
    """Camera-shake blur: the image convolved with a random trajectory PSF ``length`` pixels across.

    The trajectory comes from ``seed``; ``strength`` scales its length, so the same seed gives the same
    shake shape at any severity.
    """

    def __init__(self) -> None:
        super().__init__("motion_blur", "camera-shake motion blur with a random trajectory kernel",
                         task="deblur", stage=Stage.OPTICS)

    def draw(self, x: Tensor, generator: torch.Generator, strength: float) -> Params:
        return {"seed": draw_seed(generator), "length": uniform(generator, 5.0, 17.0) * strength}

    def forward(self, x: Tensor, *, seed: int, length: float) -> Tensor:
        return filter2d(x, trajectory_kernel(shake_trajectory(seed), length))


class DefocusBlur(Degradation):
    """Out-of-focus blur: a disk PSF of ``radius`` pixels, or a Gaussian with sigma = ``radius``."""

    def __init__(self) -> None:
        super().__init__("defocus_blur", "defocus blur: disk (pillbox) or Gaussian kernel",
                         task="deblur", stage=Stage.OPTICS)

    def draw(self, x: Tensor, generator: torch.Generator, strength: float) -> Params:
        kind = choice(generator, ("disk", "disk", "gaussian"))
        radius = uniform(generator, 1.0, 3.0) * strength
        # a Gaussian with sigma = r / 2 has the variance of a disk of radius r
        return {"kind": kind, "radius": radius * (0.5 if kind == "gaussian" else 1.0)}

    def forward(self, x: Tensor, *, kind: str, radius: float) -> Tensor:
        if kind == "gaussian":
            return gaussian_blur(x, radius)
        if kind == "disk":
            return filter2d(x, disk_kernel(radius)) if radius > 0 else x
        raise ValueError(f"defocus kind must be 'disk' or 'gaussian', got {kind!r}")


register(MotionBlur())
register(DefocusBlur())
