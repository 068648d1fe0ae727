"""What the sparse mixtures of experts share (AMIR's pixel routing, MoCE-IR's image routing): the standard
normal CDF of noisy top-k gating and the squared coefficient of variation of its balance losses
(Shazeer et al. 2017)."""

from __future__ import annotations

import math
from typing import Literal

import torch

from exda.layers.global_token import wide

SquaredCVForm = Literal["variance", "std"]


def normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """The standard normal CDF, Phi(x)."""
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


def squared_cv(x: torch.Tensor, form: SquaredCVForm) -> torch.Tensor:
    """The squared coefficient of variation (sample std / mean)^2 of a 1-D tensor.

    The official codes write it two ways, which differ in where the epsilon enters and in precision,
    so each family names its own:

    - ``"variance"``: var / (mean^2 + 1e-10) in float32 or wider, 0 for one element: Shazeer et al.'s
      ``cv_squared`` (``x.float().var() / (x.float().mean() ** 2 + eps)``), which AMIR's code copies.
    - ``"std"``: (std / (mean + 1e-8))^2 in the input's dtype: MoCE-IR's ``importance_loss`` and
      ``load_loss`` (src/net/moce_ir.py).
    """
    if form == "variance":
        if x.shape[0] == 1:
            return x.new_zeros(())
        x = x.to(wide(x.dtype))
        return x.var() / (x.mean() ** 2 + 1e-10)
    if form == "std":
        return (x.std() / (x.mean() + 1e-8)) ** 2
    raise ValueError(f"form must be 'variance' or 'std', got {form!r}")
