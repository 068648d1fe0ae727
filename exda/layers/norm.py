"""Layer normalisation over the channel axis of B x C x H x W feature maps (Restormer's two kinds)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.Module):
    """Per-pixel LayerNorm across channels.

    ``bias=True`` is Restormer's "WithBias" norm ((x - mean) / std * w + b). ``bias=False`` is its
    "BiasFree" norm, which divides by the standard deviation but does not subtract the mean.
    ``affine=False`` drops the learnable scale (and shift): Histoformer's norms, whose parameters are
    commented out in the official code.
    """

    def __init__(self, channels: int, bias: bool = True, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.centred = bias
        self.channels = channels
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(channels)) if bias and affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.centred:
            y = F.layer_norm(x.permute(0, 2, 3, 1), (self.channels,), self.weight, self.bias, self.eps)
            return y.permute(0, 3, 1, 2)
        y = x * torch.rsqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps)
        return y if self.weight is None else y * self.weight.view(1, -1, 1, 1)
