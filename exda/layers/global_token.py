"""ExDA primitive 2: the global spatial token (GST), a non-learnable slot for degradation context.

As drawn in the paper: the block input X_in is pooled over windows, a softmax turns the pooled cells
into weights, up-pooling brings the weights back to full resolution, and the result becomes token(s)
concatenated onto q, k and v'. The token's own outputs are dropped after attention. The paper does not
say along which axis the token is concatenated; both readings are implemented (docs/design.md):

- ``"row"`` (default): one extra *channel row* per head. The C/h x C/h channel-attention map becomes
  (C/h + 1) x (C/h + 1), so every channel can attend to a global spatial-saliency map.
- ``"columns"``: the G*G softmax-weighted pooled cells become extra *spatial positions* (columns of the
  C/h x HW matrices), so channel affinities also see a global, pooled summary of the input.

Pooling uses a fixed G x G grid, so the token has the same meaning on a 128 px training crop and on a
full-size test image. What the paper leaves open is a :class:`TokenOptions` field, each measured in
``benchmarks/token_options.py``: how cells are up-pooled (and whether pooling and up-pooling use the same
cells), whether the cell softmax sees raw or standardised pooled values, how large the ``columns``
token is, and whether X_in is the raw or the normalised block input. Every operation is written with
slices, gathers and small matrices built from ``arange`` rather than ``F.adaptive_avg_pool2d`` and
``F.interpolate``, whose exported graphs (ONNX) fix the bins to the example input's size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, TypedDict, Unpack, get_args

import torch
from torch import nn

GlobalTokenKind = Literal["off", "row", "columns"]
GLOBAL_TOKENS: tuple[str, ...] = get_args(GlobalTokenKind)
TokenUpsample = Literal["nearest", "aligned", "bilinear"]
TokenSoftmax = Literal["raw", "standardized"]
TokenColumnScale = Literal["none", "area"]
TokenInput = Literal["raw", "normalized"]


@dataclass(frozen=True)
class TokenOptions:
    """How the GST is built (docs/design.md, "Primitive 2"). The defaults were chosen from the ablation
    (docs/experiments.md); the first reading, in which the shipped weights were trained (their checkpoints
    record it), is grid 4, ``nearest``, ``raw``, ``none``, ``raw``.

    - ``grid``: G, the side of the pooling grid.
    - ``upsample``: ``"nearest"`` - adaptive-average-pooling bins (neighbouring bins share a row when
      G does not divide H) and PyTorch's nearest up-pooling (float32 source index); ``"aligned"`` - one
      partition of the pixels into G x G cells used both to pool and to up-pool; ``"bilinear"`` - the
      same cells, up-pooled bilinearly between cell centres (no hard cell edges).
    - ``softmax``: ``"raw"`` - softmax over the pooled values as they are (near uniform when features are
      small); ``"standardized"`` - over the pooled values standardised per channel across the cells, so
      its sharpness does not depend on the features' scale.
    - ``column_scale`` (``columns`` only): ``"none"`` - each cell enters the inner products once;
      ``"area"`` - times sqrt(HW / G^2), as if its value were spread over the HW / G^2 pixels it stands
      for, so the token's share of the q/k norms does not fall as 1/HW.
    - ``input``: X_in is the ``"raw"`` block input or the ``"normalized"`` one the attention sees.
    """

    grid: int = 4
    upsample: TokenUpsample = "bilinear"
    softmax: TokenSoftmax = "standardized"
    column_scale: TokenColumnScale = "area"
    input: TokenInput = "normalized"

    def __post_init__(self) -> None:
        if self.grid < 1:
            raise ValueError(f"token grid must be >= 1, got {self.grid}")
        for name, kind in (("upsample", TokenUpsample), ("softmax", TokenSoftmax),
                           ("column_scale", TokenColumnScale), ("input", TokenInput)):
            if getattr(self, name) not in get_args(kind):
                raise ValueError(f"token_{name} must be one of {get_args(kind)}, got {getattr(self, name)!r}")

    def as_kwargs(self) -> dict[str, int | str]:
        """These options as a model family's ``token_*`` keyword arguments (the inverse of :func:`token_options`)."""
        return {f"token_{name}": value for name, value in asdict(self).items()}


def token_kwargs(model: nn.Module) -> dict[str, int | str]:
    """The model's GST options as the ``token_*`` keyword arguments of its family ({} without a GST),
    so that a checkpoint records them and later changes of the defaults leave it as it was trained."""
    for module in model.modules():
        if isinstance(module, GlobalSpatialToken):
            return module.options.as_kwargs()
    return {}


class TokenKwargs(TypedDict, total=False):
    """A model family's ``token_*`` keyword arguments: TokenOptions' fields, prefixed."""

    token_grid: int
    token_upsample: TokenUpsample
    token_softmax: TokenSoftmax
    token_column_scale: TokenColumnScale
    token_input: TokenInput


def token_options(**kwargs: Unpack[TokenKwargs]) -> TokenOptions:
    """TokenOptions from a model family's ``token_*`` keyword arguments; an absent one keeps its default.
    Any other keyword is a TypeError, as for a misspelt argument of the family itself."""
    unknown = sorted(set(kwargs) - set(TokenKwargs.__annotations__))
    if unknown:
        raise TypeError(f"unexpected keyword argument {unknown[0]!r}")
    return TokenOptions(**{name.removeprefix("token_"): value for name, value in kwargs.items()})


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


def pool_channels_last(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``rows @ x @ cols^T`` (B x C x G x G) for a channels-last x, read in its own layout: two matrix
    products over the B x H x (W C) and B G x W x C views, so the feature map is never copied to NCHW."""
    b, c, h, w = x.shape
    nhwc = x.permute(0, 2, 3, 1)  # a view: x is channels-last
    by_rows = (rows @ nhwc.reshape(b, h, w * c)).view(b, rows.shape[0], w, c)
    return (cols @ by_rows).permute(0, 3, 1, 2)  # B x G x G x C -> B x C x G x G (a view of G*G*C values)


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether x is laid out NHWC and not also NCHW (which single-channel or 1 x 1 maps are)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def wide(dtype: torch.dtype) -> torch.dtype:
    """float32 or wider (bf16/fp16 become float32, float64 stays)."""
    return torch.promote_types(dtype, torch.float32)


def cell_index(n: int, grid: int, device: torch.device | None = None) -> torch.Tensor:
    """The cell (0..G-1) of each of n pixels along one axis: floor(i G / n) in exact integer arithmetic."""
    return torch.arange(n, device=device) * grid // n


def pool_matrix(n: int, grid: int, dtype: torch.dtype, device: torch.device | None = None) -> torch.Tensor:
    """G x n: row i averages the pixels of cell i; a cell without pixels (n < G) takes the pixel whose
    cell index is nearest below, so every row sums to 1."""
    cells = torch.arange(grid, device=device)
    member = (cell_index(n, grid, device)[None, :] == cells[:, None]).to(dtype)
    count = member.sum(dim=1, keepdim=True)
    nearest = (torch.arange(n, device=device)[None, :] == (cells[:, None] * n // grid)).to(dtype)
    return torch.where(count > 0, member / count.clamp_min(1), nearest)


def upsample_matrix(n: int, grid: int, mode: TokenUpsample, dtype: torch.dtype,
                    device: torch.device | None = None) -> torch.Tensor:
    """n x G: ``"aligned"`` copies each pixel's own cell; ``"bilinear"`` interpolates between the two
    nearest cell centres (half-pixel centres, edges clamped, as ``F.interpolate(align_corners=False)``)."""
    cells = torch.arange(grid, device=device)
    if mode == "aligned":
        return (cell_index(n, grid, device)[:, None] == cells[None, :]).to(dtype)
    position = ((torch.arange(n, device=device, dtype=wide(dtype)) + 0.5) * grid / n - 0.5).clamp(0, grid - 1)
    low = position.floor().long()
    high = (low + 1).clamp(max=grid - 1)
    frac = (position - low).to(dtype)[:, None]
    return (low[:, None] == cells).to(dtype) * (1 - frac) + (high[:, None] == cells).to(dtype) * frac


class GlobalSpatialToken(nn.Module):
    """Builds the GST from the block input and appends it to per-head q, k, v (no parameters)."""

    def __init__(self, heads: int, kind: GlobalTokenKind = "row", options: TokenOptions | None = None) -> None:
        super().__init__()
        if kind not in GLOBAL_TOKENS:
            raise ValueError(f"global_token must be one of {GLOBAL_TOKENS}, got {kind!r}")
        self.heads = heads
        self.kind = kind
        self.options = options or TokenOptions()

    @property
    def grid(self) -> int:
        return self.options.grid

    def source(self, normalized: torch.Tensor, raw: torch.Tensor | None) -> torch.Tensor:
        """What X_in is, per ``options.input``: the raw block input or, with ``"normalized"`` (or no raw
        input given), the normalised one the attention sees."""
        return normalized if raw is None or self.options.input == "normalized" else raw

    def pool(self, x_in: torch.Tensor) -> torch.Tensor:
        """X_in (B x C x H x W) averaged onto the G x G grid: B x C x G x G. A channels-last X_in (the fast
        path's) is pooled by matrices in its own layout, equal to the NCHW products up to float rounding
        (band means, the ``"nearest"`` reading's, read any layout without copies)."""
        if self.options.upsample == "nearest":
            return grid_pool(x_in, self.grid)
        h, w = x_in.shape[-2:]
        rows = pool_matrix(h, self.grid, x_in.dtype, x_in.device)
        cols = pool_matrix(w, self.grid, x_in.dtype, x_in.device)
        if is_channels_last(x_in):
            return pool_channels_last(x_in, rows, cols)
        return rows @ x_in @ cols.transpose(0, 1)

    def upsample(self, cells: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """B x n x G x G cell values brought to B x n x H x W."""
        if self.options.upsample == "nearest":
            return nearest_resize(cells, size)
        rows = upsample_matrix(size[0], self.grid, self.options.upsample, cells.dtype, cells.device)
        cols = upsample_matrix(size[1], self.grid, self.options.upsample, cells.dtype, cells.device)
        return rows @ cells @ cols.transpose(0, 1)

    def cell_weights(self, x_in: torch.Tensor) -> torch.Tensor:
        """Softmax over the G x G pooled cells of X_in, per channel: B x C x G*G, rows sum to 1."""
        return self._softmax(self.pool(x_in).flatten(2)).to(x_in.dtype)

    def _softmax(self, pooled: torch.Tensor) -> torch.Tensor:
        pooled = pooled.to(wide(pooled.dtype))
        if self.options.softmax == "standardized":
            mean = pooled.mean(dim=-1, keepdim=True)
            std = pooled.std(dim=-1, keepdim=True, correction=0)
            pooled = (pooled - mean) / (std + 1e-6)
        return pooled.softmax(dim=-1)

    def tokens(self, x_in: torch.Tensor) -> torch.Tensor:
        """The token(s) for each head: B x heads x 1 x HW ("row") or B x heads x C/h x G*G ("columns")."""
        b, c, h, w = x_in.shape
        g = self.grid
        pooled = self.pool(x_in).flatten(2)
        weights = self._softmax(pooled).to(x_in.dtype) * (g * g)  # mean 1, the scale of features
        if self.kind == "row":
            # Averaging the head's channels before up-pooling equals averaging after it (up-pooling is
            # linear), and touches G*G values per channel instead of H*W.
            per_head = weights.view(b, self.heads, c // self.heads, g, g).mean(dim=2)
            return self.upsample(per_head, (h, w)).reshape(b, self.heads, 1, h * w)
        tok = (pooled * weights).view(b, self.heads, c // self.heads, g * g)
        if self.options.column_scale == "area":  # a tensor, so an exported graph keeps H and W dynamic
            tok = tok * (torch.full((), h * w, dtype=wide(tok.dtype), device=tok.device) / (g * g)).sqrt().to(tok.dtype)
        return tok

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
        o = self.options
        return (f"kind={self.kind!r}, grid={o.grid}, upsample={o.upsample!r}, softmax={o.softmax!r}, "
                f"column_scale={o.column_scale!r}, input={o.input!r}")
