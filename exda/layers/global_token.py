"""ExDA primitive 2: the global spatial token (GST), a non-learnable slot for degradation context.

As drawn in the paper: the block input X_in is pooled over windows, a softmax turns the pooled cells
into weights, up-pooling brings the weights back to full resolution, and the result becomes token(s)
concatenated onto q, k and v'. The token's own outputs are dropped after attention. The paper does not
say along which axis the token is concatenated; both readings are implemented (docs/design.md):

- ``"row"`` (default): one extra *channel row* per head. The C/h x C/h channel-attention map becomes
  (C/h + 1) x (C/h + 1), so every channel can attend to a global spatial-saliency map.
- ``"columns"``: the G*G softmax-weighted pooled cells become extra *spatial positions* (columns of the
  C/h x HW matrices), so channel affinities also see a global, pooled summary of the input.

Pooling uses a fixed G x G grid (adaptive average pooling), so the token has the same meaning on a
128 px training crop and on a full-size test image. The pooling and the nearest up-pooling are written
with slices and gathers (``grid_pool``, ``nearest_resize``) rather than ``F.adaptive_avg_pool2d`` and
``F.interpolate``, whose exported graphs (ONNX) fix the bins to the example input's size.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn

GlobalTokenKind = Literal["off", "row", "columns"]
GLOBAL_TOKENS: tuple[str, ...] = get_args(GlobalTokenKind)


def grid_pool(x: torch.Tensor, grid: int) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, grid)`` with the same bins (cell i covers rows floor(iH/G) to
    ceil((i+1)H/G)): a mean over each row band, then over each column band of the result."""
    rows = torch.cat([_band_mean(x, -2, i, grid) for i in range(grid)], dim=-2)
    return torch.cat([_band_mean(rows, -1, j, grid) for j in range(grid)], dim=-1)


def _band_mean(x: torch.Tensor, dim: int, i: int, grid: int) -> torch.Tensor:
    n = x.shape[dim]
    start, end = (i * n) // grid, ((i + 1) * n + grid - 1) // grid
    return x.narrow(dim, start, end - start).mean(dim, keepdim=True)


def nearest_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``F.interpolate(x, size, mode="nearest")`` bit for bit: source index floor(i * in/out), the
    ratio rounded to float32 as PyTorch does, picked with one gather per axis."""
    for dim, out in zip((-2, -1), size, strict=True):
        n = x.shape[dim]
        ratio = torch.full((), n, dtype=torch.float32, device=x.device) / out
        index = (torch.arange(out, dtype=torch.float32, device=x.device) * ratio).long()  # floor: all >= 0
        x = x.index_select(dim, index.clamp(max=n - 1))
    return x


class GlobalSpatialToken(nn.Module):
    """Builds the GST from the block input and appends it to per-head q, k, v (no parameters)."""

    def __init__(self, heads: int, kind: GlobalTokenKind = "row", grid: int = 4) -> None:
        super().__init__()
        if kind not in GLOBAL_TOKENS:
            raise ValueError(f"global_token must be one of {GLOBAL_TOKENS}, got {kind!r}")
        if grid < 1:
            raise ValueError(f"token grid must be >= 1, got {grid}")
        self.heads = heads
        self.kind = kind
        self.grid = grid

    def cell_weights(self, x_in: torch.Tensor) -> torch.Tensor:
        """Pool X_in (B x C x H x W) onto a G x G grid and softmax over cells: B x C x G*G, rows sum to 1."""
        pooled = grid_pool(x_in, self.grid).flatten(2)
        return pooled.float().softmax(dim=-1).to(x_in.dtype)

    def tokens(self, x_in: torch.Tensor) -> torch.Tensor:
        """The token(s) for each head: B x heads x 1 x HW ("row") or B x heads x C/h x G*G ("columns")."""
        b, c, h, w = x_in.shape
        g = self.grid
        weights = self.cell_weights(x_in) * (g * g)  # mean 1, the scale of features
        if self.kind == "row":
            # Averaging the head's channels before nearest up-pooling equals averaging after it, and
            # touches G*G values per channel instead of H*W.
            per_head = weights.view(b, self.heads, c // self.heads, g, g).mean(dim=2)
            return nearest_resize(per_head, (h, w)).view(b, self.heads, 1, h * w)
        pooled = grid_pool(x_in, g).flatten(2)
        return (pooled * weights).view(b, self.heads, c // self.heads, g * g)

    def append(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, x_in: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Concatenate the token onto per-head q, k, v (each B x heads x C/h x HW)."""
        tok = self.tokens(x_in).to(q.dtype)
        dim = 2 if self.kind == "row" else 3
        return torch.cat([q, tok], dim), torch.cat([k, tok], dim), torch.cat([v, tok], dim)

    def drop(self, out: torch.Tensor) -> torch.Tensor:
        """Remove the token's own outputs after attention (B x heads x C/h(+1) x HW(+G*G))."""
        if self.kind == "row":
            return out[:, :, :-1, :]
        return out[..., : -self.grid * self.grid]

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, grid={self.grid}"
