"""The degradation contract: a deterministic operator plus a seeded sampler of its parameters.

As in deepinv's physics operators, ``apply(x, **params)`` has no hidden randomness: operators that need
random fields (noise, streaks, flakes, trajectories) receive an integer ``seed`` among their params and
build their own generator from it. All randomness of a *draw* lives in ``sample_params``, which reads a
caller-owned ``torch.Generator``; :class:`DegradationSampler` owns that generator.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from enum import IntEnum
from typing import Any

import torch
from torch import Tensor

from exda.errors import UserError

Params = dict[str, Any]
MIN_SIZE = 8


class Stage(IntEnum):
    """Where an effect happens on the way from scene to file; mixtures apply stages in this order."""

    MEDIUM = 10  # haze, underwater: light scattered and absorbed between scene and camera
    WEATHER = 20  # rain streaks, snow flakes in front of the scene
    ILLUMINATION = 30  # low light / short exposure
    OPTICS = 40  # camera shake, defocus, limited resolution
    SENSOR = 50  # read, shot and Rician noise, low-dose counting noise
    COMPRESSION = 60  # JPEG


def check_image(x: Tensor) -> None:
    """Reject inputs that are not B x C x H x W floating images with C in {1, 3}."""
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] not in (1, 3) or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise UserError(f"expected a float B x C x H x W image tensor with C 1 or 3, got {shape}")
    if min(x.shape[-2:]) < MIN_SIZE:
        raise UserError(f"image is too small to degrade: {tuple(x.shape[-2:])} (minimum {MIN_SIZE} pixels)")


class Degradation(ABC):
    """A named, deterministic image degradation ``apply(x, **params)`` with a parameter sampler.

    Subclasses implement ``draw`` (all randomness, JSON-serialisable output) and ``forward`` (the
    physics, on float32); the public ``sample_params`` and ``apply`` validate inputs, and ``apply`` keeps
    dtype, device and the [0, 1] range. ``strength`` scales severity: 0 is (close to) the identity,
    1 is benchmark-typical.
    """

    uses_depth: bool = False  # whether ``apply`` accepts an optional ``depth`` map
    # whether it changes the colour balance itself (underwater): data.scene_colour leaves its clean crops
    # untinted, so the cast a model learns to remove is the one this degradation adds
    casts_colour: bool = False

    def __init__(self, name: str, description: str, task: str, stage: Stage) -> None:
        self.name = name
        self.description = description
        self.task = task
        self.stage = stage

    def sample_params(self, x: Tensor, generator: torch.Generator, strength: float = 1.0) -> Params:
        """Draw the parameters of one degradation of ``x`` (plain JSON types only)."""
        check_image(x)
        return self.draw(x, generator, check_strength(strength))

    @abstractmethod
    def draw(self, x: Tensor, generator: torch.Generator, strength: float) -> Params:
        """Draw parameters; the number of draws must not depend on ``strength`` (same seed, same scene)."""

    @abstractmethod
    def forward(self, x: Tensor, **params: Any) -> Tensor:
        """Degrade a float32 B x C x H x W image; the result is clipped to [0, 1] by ``apply``."""

    def apply(self, x: Tensor, **params: Any) -> Tensor:
        """Degrade ``x`` deterministically with ``params`` (as returned by ``sample_params``)."""
        check_image(x)
        y = self.forward(x.float(), **params)
        return y.clamp(0.0, 1.0).to(x.dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, task={self.task!r})"


def check_strength(strength: float) -> float:
    """Severity scale must be a finite non-negative number."""
    value = float(strength)
    if not value >= 0.0 or value == float("inf"):
        raise UserError(f"strength must be a finite number >= 0, got {strength}")
    return value
