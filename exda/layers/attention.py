"""MDTA: Restormer's multi-Dconv-head transposed attention, with the two ExDA primitives as options, and
its cross-attention form.

Attention runs across channels, not pixels: per head, the C/h x C/h map softmax(q k^T * t) mixes the
value channels, so its cost is linear in the number of pixels.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from exda.layers.global_token import GlobalSpatialToken, GlobalTokenKind, TokenOptions, wide
from exda.layers.value_transform import NonlinearValue, ValueTransformKind


class TransposedAttention(nn.Module):
    """Channel (transposed) self-attention: 1x1 + 3x3 depthwise QKV, L2-normalised q and k, learnable
    per-head temperature, 1x1 output projection. ``value_transform`` and ``global_token`` add ExDA's
    nonlinear value path and global spatial token (built as ``token`` says); both "off" gives
    Restormer's MDTA exactly.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        bias: bool = False,
        value_transform: ValueTransformKind = "off",
        global_token: GlobalTokenKind = "off",
        token: TokenOptions | None = None,
        path: Literal["fast", "reference"] = "fast",
    ) -> None:
        super().__init__()
        if path not in ("fast", "reference"):
            raise ValueError(f"path must be 'fast' or 'reference', got {path!r}")
        self.path = path
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=bias)
        self.value = NonlinearValue(dim, heads, value_transform, bias=bias)
        self.token = None if global_token == "off" else GlobalSpatialToken(heads, global_token, token)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor, x_in: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` is the normalised block input; ``x_in`` the raw block input, which the GST pools unless
        its options say ``input="normalized"`` (then it pools ``x``)."""
        b, c, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        v = self.value(v)
        q, k, v = (t.reshape(b, self.heads, c // self.heads, h * w) for t in (q, k, v))
        if self.token is None:
            out = attend(q, k, v, self.temperature)
        elif self.path == "reference":  # concatenate, attend, drop the token's outputs: as drawn
            q, k, v = self.token.append(q, k, v, self.token.source(x, x_in))
            out = self.token.drop(attend(q, k, v, self.temperature))
        else:
            tok = self.token.tokens(self.token.source(x, x_in)).to(q.dtype)
            attend_with_token = attend_with_row_token if self.token.kind == "row" else attend_with_column_tokens
            out = attend_with_token(q, k, v, tok, self.temperature)
        return self.project_out(out.reshape(b, c, h, w))


class TransposedCrossAttention(nn.Module):
    """Channel (transposed) attention with queries from ``x`` and keys/values from ``y``: 1x1 + depthwise
    conv projections (``kv_kernel`` for keys/values), L2-normalised q and k, per-head temperature (AdaIR's
    frequency blocks, MoCE-IR's decoder blocks)."""

    def __init__(self, dim: int, heads: int, bias: bool = False, kv_kernel: int = 3) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.q = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)
        self.q_dwconv = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim, bias=bias)
        self.kv = nn.Conv2d(dim, dim * 2, kernel_size=1, bias=bias)
        self.kv_dwconv = nn.Conv2d(dim * 2, dim * 2, kernel_size=kv_kernel, padding=kv_kernel // 2, groups=dim * 2,
                                   bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.q_dwconv(self.q(x))
        k, v = self.kv_dwconv(self.kv(y)).chunk(2, dim=1)
        q, k, v = (t.reshape(b, self.heads, c // self.heads, h * w) for t in (q, k, v))
        return self.project_out(attend(q, k, v, self.temperature).reshape(b, c, h, w))


EPS = 1e-12  # F.normalize's


def squared_norm(t: torch.Tensor) -> torch.Tensor:
    """||t||^2 along the pixel axis, in float32 or wider (B x heads x rows x 1).

    The pixel axis of a channels-last feature map's per-head view is strided (one value per channel of
    the pixel), and a reduction along it reads each cache line once per row: an order of magnitude slower
    than on a contiguous view (whole networks: benchmarks/results/attention_speed.md). Without
    autograd, such a float32 (or wider) t's squared norms are taken as the diagonal of t t^T instead, a
    matrix product that reads t panel by panel in any layout. In training, where the product's backward
    costs more than it saves, and for narrower types, the float32-accumulated reduction stays."""
    acc = wide(t.dtype)
    if t.dtype == acc and t.stride(-1) != 1 and not t.requires_grad:
        return torch.diagonal(t @ t.transpose(-2, -1), dim1=-2, dim2=-1).unsqueeze(-1)
    return torch.linalg.vector_norm(t, dim=-1, keepdim=True, dtype=acc).square()


def inverse_norm(t: torch.Tensor) -> torch.Tensor:
    """1 / max(||t||, eps) along the pixel axis, in float32 or wider (B x heads x rows x 1)."""
    return squared_norm(t).clamp_min(EPS * EPS).rsqrt()


def scaled_logits(q: torch.Tensor, k: torch.Tensor, q_inv: torch.Tensor) -> torch.Tensor:
    """norm(q) norm(k)^T, given q's inverse norms, computed as (q k^T) / (|q| |k|^T): the division touches
    the small C/h x C/h map instead of the two C/h x HW tensors (float32 or wider)."""
    return (q @ k.transpose(-2, -1)).to(wide(q.dtype)) * (q_inv * inverse_norm(k).transpose(-2, -1))


def cosine_logits(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """norm(q) norm(k)^T (equal to F.normalize on both sides; float32 or wider)."""
    return scaled_logits(q, k, inverse_norm(q))


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """softmax(norm(q) norm(k)^T * t) v over per-head tensors B x heads x C/h x N."""
    weights = (cosine_logits(q, k) * temperature).softmax(dim=-1)
    return weights.to(v.dtype) @ v


def attend_with_row_token(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tok: torch.Tensor, temperature: torch.Tensor
) -> torch.Tensor:
    """Equals concatenating a token row (B x heads x 1 x HW) onto q, k, v, attending, and dropping the
    token's output row, without copying q, k, v: the token's query row only feeds the dropped row,
    so the token enters as one extra key/value whose logits and output term are computed apart."""
    q_inv = inverse_norm(q)  # once for both products
    logits = torch.cat([scaled_logits(q, k, q_inv), scaled_logits(q, tok, q_inv)], dim=-1)
    weights = (logits * temperature).softmax(dim=-1).to(v.dtype)
    return torch.addcmul(weights[..., :-1] @ v, weights[..., -1:], tok)  # one pass for the token's term


def attend_with_column_tokens(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tok: torch.Tensor, temperature: torch.Tensor
) -> torch.Tensor:
    """Equals concatenating token columns (B x heads x C/h x G*G) onto q, k, v along the pixel axis,
    attending, and dropping the token columns, without the copies: the extended inner products are
    q k^T + tok tok^T over the extended norms, and the dropped columns never reach the output."""
    acc = wide(q.dtype)
    tok_sq = squared_norm(tok)
    q_norm = (squared_norm(q) + tok_sq).sqrt().clamp_min(EPS)
    k_norm = (squared_norm(k) + tok_sq).sqrt().clamp_min(EPS)
    logits = (q @ k.transpose(-2, -1) + tok @ tok.transpose(-2, -1)).to(acc) / (q_norm * k_norm.transpose(-2, -1))
    return (logits * temperature).softmax(dim=-1).to(v.dtype) @ v
