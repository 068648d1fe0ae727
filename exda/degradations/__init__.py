"""Degradation synthesis: deterministic operators ``apply(x, **params)`` and seeded samplers.

>>> from exda.degradations import DegradationSampler
>>> y, params = DegradationSampler("low_haze_rain", seed=0)(x)  # x: B x C x H x W in [0, 1]

Family modules register their degradations on import; the list below is explicit, not a folder scan.
"""

from exda.degradations import blur, ct, identity, jpeg, low_light, mri, noise, pet, scattering, weather  # noqa: F401
from exda.degradations.base import Degradation, Params, Stage
from exda.degradations.mixtures import Compose, RandomMix
from exda.degradations.registry import get_degradation, list_degradations
from exda.degradations.sampler import DegradationSampler

__all__ = [
    "Compose",
    "Degradation",
    "DegradationSampler",
    "Params",
    "RandomMix",
    "Stage",
    "get_degradation",
    "list_degradations",
]
