"""Layer normalisation over the channel axis of B x C x H x W feature maps (Restormer's two kinds)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.Module):
    """Per-pixel LayerNorm across channels.

    ``bias=True`` is Restormer's "WithBias" norm ((x - mean) / std * w + b). ``bias=False`` is its
    "BiasFree" norm, which divides by the standard deviation but does not subtract the mean.
    """

    def __init__(self, channels: int, bias: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is not None:
            y = F.layer_norm(x.permute(0, 2, 3, 1), self.weight.shape, self.weight, self.bias, self.eps)
            return y.permute(0, 3, 1, 2)
        var = x.var(dim=1, keepdim=True, unbiased=False)
        return x * torch.rsqrt(var + self.eps) * self.weight.view(1, -1, 1, 1)
