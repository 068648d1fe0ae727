"""The transformer block shared by Restormer, PromptIR and their ExDA versions."""

from __future__ import annotations

import torch
from torch import nn

from exda.layers.attention import TransposedAttention
from exda.layers.ffn import GatedDconvFFN
from exda.layers.global_token import GlobalTokenKind, TokenOptions
from exda.layers.norm import LayerNorm2d
from exda.layers.value_transform import ValueTransformKind


class TransformerBlock(nn.Module):
    """x + Attention(LN(x)); then x + GDFN(LN(x)). With ExDA options on, this is the "ExDA block"."""

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
    ) -> None:
        super().__init__()
        self.norm1 = LayerNorm2d(dim, bias=norm_bias)
        self.attn = TransposedAttention(dim, heads, bias, value_transform, global_token, token)
        self.norm2 = LayerNorm2d(dim, bias=norm_bias)
        self.ffn = GatedDconvFFN(dim, ffn_expansion, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), x_in=x)
        return x + self.ffn(self.norm2(x))

    def token_cell_weights(self, x: torch.Tensor) -> torch.Tensor | None:
        """The GST's softmax cell weights (B x C x G*G) for this block's input, or None without a GST."""
        if self.attn.token is None:
            return None
        return self.attn.token.cell_weights(self.attn.token.source(self.norm1(x), x))
