"""Inference on images of any size: tile by tile with smooth blending, in bounded device memory.

Tiles of ``tile`` px overlap by ``overlap`` px, and the last tile on each axis is aligned to the border.
Only one tile is on the model's device at a time; outputs are accumulated on the CPU in float32.

Blending: on each edge a tile shares with a neighbour, the outer ``overlap // 4`` px get weight 0 and
the next ``overlap - 2 * (overlap // 4)`` px ramp up with a raised cosine; the weights of neighbouring
tiles sum to one in a regular overlap and are normalised everywhere, so there are no seams. Because the
outer quarter of every overlap is discarded, a purely local model whose receptive radius is at most
``overlap // 4`` px gives exactly the untiled output (up to float rounding).

Caveat: Restormer-style networks use image-global operations (transposed attention over all pixels,
ExDA's global spatial token), so for them tiled and untiled outputs differ; tile only when needed.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm import tqdm

from exda.amp import autocast

EDGE_MARGIN = 16  # px mirrored around an image before restoring it (see ``restore``)


def model_device(model: nn.Module) -> torch.device:
    """The device holding the model's parameters (CPU for a model without parameters)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _run(model: nn.Module, x: Tensor, device: torch.device, bf16: bool) -> Tensor:
    """One forward pass on ``device``; the result comes back to the CPU as float32."""
    with autocast(device, "bf16" if bf16 else "fp32"):
        out = model(x.to(device=device, dtype=torch.float32))
    return out.float().cpu()


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile offsets covering ``length`` px with stride ``tile - overlap``; the last one ends at the border."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def edge_weights(size: int, overlap: int, ramp_start: bool, ramp_end: bool) -> Tensor:
    """1-D blend weights of one tile: zero margin, raised-cosine ramp, then one, on the shared edges."""
    w = torch.ones(size, dtype=torch.float32)
    margin = overlap // 4
    ramp_len = overlap - 2 * margin
    if ramp_len == 0:
        return w
    i = torch.arange(ramp_len, dtype=torch.float64)
    ramp = (0.5 - 0.5 * torch.cos(math.pi * (i + 0.5) / ramp_len)).float()
    if ramp_start:
        w[:margin] = 0.0
        w[margin : margin + ramp_len] = ramp
    if ramp_end:
        w[size - margin - ramp_len : size - margin] = ramp.flip(0)
        w[size - margin :] = 0.0
    return w


def _check_tiling(x: Tensor, tile: int, overlap: int) -> None:
    if x.ndim != 4:
        raise ValueError(f"expected B x C x H x W, got shape {tuple(x.shape)}")
    if tile < 1:
        raise ValueError(f"tile must be positive, got {tile}")
    if overlap < 0 or 2 * overlap > tile:
        raise ValueError(f"overlap must be in [0, tile / 2], got overlap {overlap} for tile {tile}")


@torch.inference_mode()
def restore_tiled(
    model: nn.Module, x: Tensor, *, tile: int, overlap: int, bf16: bool = False, progress: bool = False
) -> Tensor:
    """Restore ``x`` (B x C x H x W) tile by tile and blend; returns a float32 CPU tensor."""
    _check_tiling(x, tile, overlap)
    device = model_device(model)
    h, w = x.shape[-2:]
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    th, tw = min(tile, h), min(tile, w)
    out: Tensor | None = None
    weight_sum = torch.zeros(h, w, dtype=torch.float32)
    bar = tqdm(total=len(ys) * len(xs), desc="tiles", unit="tile", disable=not progress, leave=False)
    for y0 in ys:
        wy = edge_weights(th, overlap, ramp_start=y0 > 0, ramp_end=y0 + th < h)
        for x0 in xs:
            wx = edge_weights(tw, overlap, ramp_start=x0 > 0, ramp_end=x0 + tw < w)
            pred = _run(model, x[..., y0 : y0 + th, x0 : x0 + tw], device, bf16)
            if out is None:
                out = torch.zeros(x.shape[0], pred.shape[1], h, w, dtype=torch.float32)
            weight = wy[:, None] * wx[None, :]
            out[..., y0 : y0 + th, x0 : x0 + tw] += pred * weight
            weight_sum[y0 : y0 + th, x0 : x0 + tw] += weight
            bar.update()
    bar.close()
    assert out is not None  # at least one tile always runs
    return out / weight_sum


def reflect_margin(x: Tensor, margin: int) -> tuple[Tensor, int]:
    """``x`` with ``margin`` px mirrored onto every side (less when the image is smaller); and that margin."""
    margin = max(0, min(margin, x.shape[-2] - 1, x.shape[-1] - 1))
    return (F.pad(x, (margin,) * 4, mode="reflect") if margin else x), margin


def pass_plan(shape: tuple[int, int, int, int], *, tile: int | None, overlap: int = 32,
              margin: int = EDGE_MARGIN) -> tuple[tuple[int, int, int, int], int]:
    """The input shape the model sees when :func:`restore` restores a ``shape`` image, and how many calls
    it makes with it (one whole pass, or one per tile: all tiles have the same shape)."""
    b, c, h, w = shape
    margin = max(0, min(margin, h - 1, w - 1))
    h, w = h + 2 * margin, w + 2 * margin
    if tile is None or max(h, w) <= tile:
        return (b, c, h, w), 1
    calls = len(tile_starts(h, tile, overlap)) * len(tile_starts(w, tile, overlap))
    return (b, c, min(tile, h), min(tile, w)), calls


@torch.inference_mode()
def restore(
    model: nn.Module,
    x: Tensor,
    *,
    tile: int | None = None,
    overlap: int = 32,
    bf16: bool = False,
    progress: bool = False,
    margin: int = EDGE_MARGIN,
) -> Tensor:
    """Restore ``x`` (B x C x H x W) in one pass, or tiled when ``tile`` is set and the image exceeds it.

    The image is first given a mirrored ``margin`` on every side (cropped off again): the networks'
    zero-padded convolutions otherwise darken or tint the outermost 1-3 px (a frame, worst on low light).
    Returns the raw model output as a float32 CPU tensor (callers clamp to [0, 1] when they need to).
    """
    if x.ndim != 4:
        raise ValueError(f"expected B x C x H x W, got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    x, m = reflect_margin(x, margin)
    if tile is None or max(x.shape[-2:]) <= tile:
        out = _run(model, x, model_device(model), bf16)
    else:
        out = restore_tiled(model, x, tile=tile, overlap=overlap, bf16=bf16, progress=progress)
    return out[..., m : m + h, m : m + w]
