"""Synthetic dead-leaves images: a scale-invariant prior that complements a small pool of photos.

Achddou, Gousseau & Ladjal (2021), "Synthetic images as a regularity prior for image restoration neural
networks": opaque disks fall one after another and hide what lies beneath; radii follow the power law
p(r) ~ r^-3 on [rmin, rmax], which gives the image the scale invariance and the edge statistics of
natural photos. Colours are drawn from natural-image colour statistics: pixels of real photos when a
``palette`` is given, otherwise a luma / opponent-chroma model of them. Optional per-disk shading
(``shading``) and a final Gaussian blur (``blur_sigma``, soft edges as from a lens) make the disks less
flat; both default to off, as in the paper's basic model.

The disks are drawn front to back (the first disk covering a pixel is the visible one), so drawing stops
as soon as every pixel is covered; the picture is the same as painting back to front.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from exda.degradations.ops import gaussian_blur

_BATCH = 4096  # disks drawn per call to the generator


def dead_leaves(
    size: int | tuple[int, int],
    generator: torch.Generator,
    *,
    rmin: float = 1.5,
    rmax: float | None = None,
    alpha: float = 3.0,
    palette: np.ndarray | None = None,
    shading: float = 0.0,
    blur_sigma: float = 0.0,
) -> np.ndarray:
    """A dead-leaves image, H x W x 3 float32 in [0, 1]; the same generator state gives the same image.

    ``size`` is ``s`` (square) or ``(height, width)``. Radii in pixels follow r^-alpha on [rmin, rmax]
    (``rmax`` defaults to half the longer side). ``palette``: N x 3 RGB colours in [0, 1] to draw from
    (e.g. pixels sampled from photos). ``shading``: amplitude of a random linear brightness ramp across
    each disk (0 = flat disks). ``blur_sigma``: Gaussian blur of the result, in pixels (0 = none).
    """
    height, width = (size, size) if isinstance(size, int) else size
    rmax = max(height, width) / 2 if rmax is None else rmax
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {height} x {width}")
    if not 0.5 <= rmin <= rmax:
        raise ValueError(f"need 0.5 <= rmin <= rmax, got rmin={rmin}, rmax={rmax}")
    if palette is not None and (palette.ndim != 2 or palette.shape[1] != 3 or len(palette) == 0):
        raise ValueError(f"palette must be N x 3, got shape {palette.shape}")

    image = np.zeros((height, width, 3), np.float32)
    covered = np.zeros((height, width), bool)
    left = height * width
    while left:
        radii = power_law_radii(_BATCH, generator, rmin, rmax, alpha).numpy()
        centres = torch.rand(_BATCH, 2, generator=generator, dtype=torch.float64).numpy() * (height, width)
        colours = _draw_colours(_BATCH, generator, palette)
        ramps = (torch.rand(_BATCH, 2, generator=generator, dtype=torch.float64).numpy() * 2 - 1) * shading
        # Most late disks land on covered ground: skip, all at once, those whose box was covered already.
        for i in np.flatnonzero(_uncovered_in_box(covered, centres, radii)):
            left -= _paint_disk(image, covered, *centres[i], radii[i], colours[i], ramps[i])
            if not left:
                break
    if blur_sigma > 0:
        blurred = gaussian_blur(torch.from_numpy(image).permute(2, 0, 1)[None], blur_sigma)
        image = blurred[0].permute(1, 2, 0).numpy()
    return np.clip(image, 0.0, 1.0).astype(np.float32, copy=False)


def power_law_radii(n: int, generator: torch.Generator, rmin: float, rmax: float, alpha: float = 3.0) -> torch.Tensor:
    """``n`` radii with density proportional to r^-alpha on [rmin, rmax] (inverse-CDF sampling), float64."""
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    if math.isclose(alpha, 1.0):
        return rmin * (rmax / rmin) ** u
    e = 1.0 - alpha
    return (rmin**e + u * (rmax**e - rmin**e)) ** (1.0 / e)


def _draw_colours(n: int, generator: torch.Generator, palette: np.ndarray | None) -> np.ndarray:
    """``n`` RGB colours: rows of ``palette``, or a luma / opponent-chroma model of natural colours."""
    if palette is not None:
        index = torch.randint(len(palette), (n,), generator=generator).numpy()
        return palette[index].astype(np.float64)
    u = torch.rand(n, 3, generator=generator, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
    # Luma: Kumaraswamy(1.6, 2.2), a Beta-like law with a closed-form inverse CDF: mean ~0.4, few extremes.
    luma = (1 - (1 - u[:, 0]) ** (1 / 2.2)) ** (1 / 1.6)
    # BT.601 chroma: narrow Gaussians (Box-Muller pair), slightly anti-correlated (blue-green vs red-yellow).
    radius, angle = torch.sqrt(-2 * torch.log(u[:, 1])), 2 * math.pi * u[:, 2]
    z0, z1 = radius * torch.cos(angle), radius * torch.sin(angle)
    cb = 0.09 * z0
    cr = 0.07 * (-0.3 * z0 + math.sqrt(1 - 0.3**2) * z1)
    rgb = torch.stack([luma + 1.402 * cr, luma - 0.344136 * cb - 0.714136 * cr, luma + 1.772 * cb], dim=1)
    return rgb.clamp(0.0, 1.0).numpy()


def _uncovered_in_box(covered: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Per disk: does its bounding box hold an uncovered pixel? (a summed-area table of ``~covered``)"""
    table = np.zeros((covered.shape[0] + 1, covered.shape[1] + 1), np.int32)
    table[1:, 1:] = (~covered).cumsum(0, dtype=np.int32).cumsum(1, dtype=np.int32)
    lo = np.clip((centres - radii[:, None]).astype(np.int64), 0, covered.shape)
    hi = np.clip((centres + radii[:, None]).astype(np.int64) + 1, 0, covered.shape)
    (y0, x0), (y1, x1) = lo.T, hi.T
    return table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0] > 0


def _paint_disk(
    image: np.ndarray, covered: np.ndarray, cy: float, cx: float, r: float, colour: np.ndarray, ramp: np.ndarray
) -> int:
    """Paint the still uncovered pixels (centres inside the disk); return how many were painted."""
    height, width = covered.shape
    y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 1, height)
    x0, x1 = max(int(cx - r), 0), min(int(cx + r) + 1, width)
    if y0 >= y1 or x0 >= x1:
        return 0
    dy = (np.arange(y0, y1) + 0.5 - cy)[:, None] / r
    dx = (np.arange(x0, x1) + 0.5 - cx)[None, :] / r
    free = (dy * dy + dx * dx <= 1.0) & ~covered[y0:y1, x0:x1]
    count = int(free.sum())
    if count:
        paint = colour[None, :]
        if ramp.any():
            paint = (1.0 + ramp[0] * dy + ramp[1] * dx)[free][:, None] * paint
        image[y0:y1, x0:x1][free] = paint
        covered[y0:y1, x0:x1] |= free
    return count
