"""The transformer block of the U-Net families: Restormer's, and others' by passing their layer classes."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from exda.layers.attention import TransposedAttention
from exda.layers.ffn import GatedDconvFFN
from exda.layers.global_token import GlobalTokenKind, TokenOptions
from exda.layers.norm import LayerNorm2d
from exda.layers.value_transform import ValueTransformKind


class TransformerBlock(nn.Module):
    """x + Attention(LN(x)); then x + GDFN(LN(x)). With ExDA options on, this is the "ExDA block".

    The layers are Restormer's (MDTA, GDFN, LayerNorm2d) unless a family passes its own classes, called
    as ``attn_layer(dim, heads, bias, value_transform, global_token, token)``, ``ffn_layer(dim,
    ffn_expansion, bias)`` and ``norm_layer(dim, bias=norm_bias)`` (Histoformer's DHSA, DGFF and
    parameter-free norms).
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        ffn_expansion: float = 2.66,
        bias: bool = False,
        norm_bias: bool = True,
        value_transform: ValueTransformKind = "off",
        global_token: GlobalTokenKind = "off",
        token: TokenOptions | None = None,
        attn_layer: Callable[..., nn.Module] = TransposedAttention,
        ffn_layer: Callable[..., nn.Module] = GatedDconvFFN,
        norm_layer: Callable[..., nn.Module] = LayerNorm2d,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim, bias=norm_bias)
        self.attn = attn_layer(dim, heads, bias, value_transform, global_token, token)
        self.norm2 = norm_layer(dim, bias=norm_bias)
        self.ffn = ffn_layer(dim, ffn_expansion, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), x_in=x)
        return x + self.ffn(self.norm2(x))

    def token_cell_weights(self, x: torch.Tensor) -> torch.Tensor | None:
        """The GST's softmax cell weights (B x C x G*G) for this block's input, or None without a GST."""
        if self.attn.token is None:
            return None
        return self.attn.token.cell_weights(self.attn.token.source(self.norm1(x), x))
