"""ExDA primitive 1: the nonlinear value transform, v' = v + phi(v).

In Restormer's transposed attention (MDTA) the value path is linear, so every output channel is a
convex mix of value channels: attention can only *select*. Adding a nonlinear term to the value path
lets the block transform what it selects. The paper gives no formula for phi; the readings below all
fit "a learnable non-linear projection with negligible overhead" (see docs/design.md).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

ValueTransformKind = Literal["off", "gelu", "dwconv_gelu", "head_mlp"]
VALUE_TRANSFORMS: tuple[str, ...] = get_args(ValueTransformKind)


class NonlinearValue(nn.Module):
    """v' = v + phi(v) on the value tensor (B x C x H x W), phi chosen by ``kind``.

    - ``"off"``: identity (plain MDTA).
    - ``"gelu"``: phi = GELU, no parameters.
    - ``"dwconv_gelu"`` (default): phi = GELU(3x3 depthwise conv), 9 parameters per channel.
    - ``"head_mlp"``: phi = per-head pointwise MLP (1x1 grouped conv -> GELU -> 1x1 grouped conv),
      2 C^2 / heads parameters.
    """

    def __init__(self, channels: int, heads: int, kind: ValueTransformKind = "dwconv_gelu", bias: bool = False):
        super().__init__()
        if kind not in VALUE_TRANSFORMS:
            raise ValueError(f"value_transform must be one of {VALUE_TRANSFORMS}, got {kind!r}")
        self.kind = kind
        if kind == "dwconv_gelu":
            self.phi = nn.Sequential(
                nn.Conv2d(channels, channels, kernel_size=3, padding=1, groups=channels, bias=bias), nn.GELU()
            )
        elif kind == "head_mlp":
            self.phi = nn.Sequential(
                nn.Conv2d(channels, channels, kernel_size=1, groups=heads, bias=bias),
                nn.GELU(),
                nn.Conv2d(channels, channels, kernel_size=1, groups=heads, bias=bias),
            )
        else:
            self.phi = None

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        if self.kind == "off":
            return v
        phi = F.gelu(v) if self.kind == "gelu" else self.phi(v)
        return phi.add_(v)  # v + phi(v), into phi's own new tensor (neither GELU's nor a conv's backward reads it)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"
