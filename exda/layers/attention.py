"""MDTA: Restormer's multi-Dconv-head transposed attention, with the two ExDA primitives as options.

Attention runs across channels, not pixels: per head, the C/h x C/h map softmax(q k^T * t) mixes the
value channels, so its cost is linear in the number of pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from exda.layers.global_token import GlobalSpatialToken, GlobalTokenKind
from exda.layers.value_transform import NonlinearValue, ValueTransformKind


class TransposedAttention(nn.Module):
    """Channel (transposed) self-attention: 1x1 + 3x3 depthwise QKV, L2-normalised q and k, learnable
    per-head temperature, 1x1 output projection. ``value_transform`` and ``global_token`` add ExDA's
    nonlinear value path and global spatial token; both "off" gives Restormer's MDTA exactly.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        bias: bool = False,
        value_transform: ValueTransformKind = "off",
        global_token: GlobalTokenKind = "off",
        token_grid: int = 4,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=bias)
        self.value = NonlinearValue(dim, heads, value_transform, bias=bias)
        self.token = None if global_token == "off" else GlobalSpatialToken(heads, global_token, token_grid)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor, x_in: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` is the normalised block input; ``x_in`` the raw block input the GST pools (default x)."""
        b, c, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        v = self.value(v)
        q, k, v = (t.reshape(b, self.heads, c // self.heads, h * w) for t in (q, k, v))
        if self.token is not None:
            q, k, v = self.token.append(q, k, v, x if x_in is None else x_in)
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1)) * self.temperature
        out = attn.softmax(dim=-1) @ v
        if self.token is not None:
            out = self.token.drop(out)
        return self.project_out(out.reshape(b, c, h, w))
