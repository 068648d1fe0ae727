"""Labelled image grids for the docs and for ``exda eval`` / ``exda degrade --grid``: every cell placed
by hand in figure coordinates, so the page has no empty gaps whatever the images' aspect ratio."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from exda.atomic import atomic_write

JPEG_QUALITY = 90  # photo grids in the docs: small files, no visible blocking

Cell = tuple[np.ndarray, str]  # H x W x C (C 1 or 3) or H x W float image in [0, 1], and its caption


def save_image_grid(
    rows: Sequence[Sequence[Cell]], path: str | Path, *, cell_height: float = 2.0, caption_height: float = 0.28,
    gap: float = 0.05, fontsize: float = 9.0, dpi: int = 100,
) -> None:
    """Save ``rows`` of captioned images; each row is centred and its cells are ``cell_height`` inches
    tall and as wide as the row's widest image asks (narrower images are centred in their cell).
    Written atomically (PNG, or any format matplotlib knows, by suffix; JPEG at quality 90)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [list(row) for row in rows if row]
    if not rows:
        raise ValueError("a grid needs at least one image")
    cell_widths = [cell_height * max(img.shape[1] / img.shape[0] for img, _ in row) for row in rows]
    row_widths = [len(row) * w + (len(row) + 1) * gap for row, w in zip(rows, cell_widths, strict=True)]
    width = max(row_widths)
    height = len(rows) * (cell_height + caption_height) + (len(rows) + 1) * gap
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    for r, (row, cell_width, row_width) in enumerate(zip(rows, cell_widths, row_widths, strict=True)):
        top = gap + r * (cell_height + caption_height + gap) + caption_height
        for c, (image, caption) in enumerate(row):
            left = (width - row_width) / 2 + gap + c * (cell_width + gap)
            rect = (left / width, 1 - (top + cell_height) / height, cell_width / width, cell_height / height)
            ax = fig.add_axes(rect)
            pixels = np.clip(image, 0.0, 1.0)
            if pixels.ndim == 2 or pixels.shape[2] == 1:
                ax.imshow(pixels.reshape(pixels.shape[:2]), cmap="gray", vmin=0.0, vmax=1.0)
            else:
                ax.imshow(pixels)
            ax.set_title(caption, fontsize=fontsize, pad=3)
            ax.set_axis_off()
    path = Path(path)
    form = path.suffix.lstrip(".").lower() or "png"
    options = {"pil_kwargs": {"quality": JPEG_QUALITY}} if form in ("jpg", "jpeg") else {}
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=form, dpi=dpi, **options))
