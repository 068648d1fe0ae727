"""GDFN: Restormer's gated depthwise-conv feed-forward network."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GatedDconvFFN(nn.Module):
    """1x1 expand to 2 hidden branches -> 3x3 depthwise -> gelu(x1) * x2 -> 1x1 back (GDFN)."""

    def __init__(self, dim: int, expansion: float = 2.66, bias: bool = False) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)
