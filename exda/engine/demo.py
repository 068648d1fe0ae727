"""The comparison behind ``exda demo`` (:mod:`exda.commands.demo`): the shipped default model against the
degraded input and the best classical method.

The held-out sample photos (never trained on) are centre-cropped, degraded with every demo degradation
at a fixed seed, restored by the default photo model (fast path) and by every classical candidate for
that degradation (exda/baselines.py), and scored; :func:`save_grid` draws one row per degradation
(degraded | default model | best classical | clean). ``benchmarks/default_model.py`` runs the same
comparison at full size.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from exda.baselines import METHODS, best_baseline, method_available, score
from exda.data.io import to_numpy, to_tensor
from exda.data.samples import load_sample, sample_names
from exda.degradations import DegradationSampler
from exda.figures import save_image_grid
from exda.inference.tiling import restore

DEMO_DEGRADATIONS: tuple[str, ...] = (
    "clean", "noise15", "noise25", "noise50", "rain", "haze", "motion_blur", "low_light", "snow", "underwater",
    "jpeg", "random_mix",
)
DEMO_SEED = 2026
DEMO_CROP = 256


@dataclass
class Row:
    """Mean scores over the photos for one degradation."""

    degradation: str
    input_psnr: float
    input_ssim: float
    restored_psnr: float
    restored_ssim: float
    baseline: str
    baseline_psnr: float
    baseline_ssim: float
    references: dict[str, float] = field(default_factory=dict)  # named methods' mean PSNR (compare's references)


def centre_crop(image: np.ndarray, size: int | None) -> np.ndarray:
    """The central ``size`` x ``size`` crop (the whole image when ``size`` is None or larger)."""
    if size is None:
        return image
    h, w = image.shape[:2]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return image[top : top + size, left : left + size]


def degrade(clean: np.ndarray, name: str, seed: int) -> np.ndarray:
    """``clean`` (H x W x C) under degradation ``name``, drawn with ``seed``."""
    degraded, _ = DegradationSampler(name, seed=seed)(to_tensor(clean).unsqueeze(0))
    return to_numpy(degraded[0])


def compare(
    model: torch.nn.Module,
    photos: dict[str, np.ndarray],
    degradations: tuple[str, ...] = DEMO_DEGRADATIONS,
    seed: int = DEMO_SEED,
    grid_photo: str | None = None,
    references: Mapping[str, Mapping[str, Callable[[np.ndarray], np.ndarray]]] | None = None,
) -> tuple[list[Row], list[tuple[str, list[np.ndarray]]]]:
    """Score ``model`` and the best classical method per degradation; also the grid's image rows.
    ``references`` names further methods to score on the same inputs, per degradation (``Row.references``)."""
    rows, grid = [], []
    names = list(photos)
    shown = grid_photo if grid_photo in photos else names[0]
    for d_index, name in enumerate(degradations):
        clean = [photos[p] for p in names]
        degraded = [degrade(img, name, seed + 1000 * d_index + i) for i, img in enumerate(clean)]
        restored = [to_numpy(restore(model, to_tensor(x).unsqueeze(0))[0].clamp(0, 1)) for x in degraded]
        inputs = [score(x, c) for x, c in zip(degraded, clean, strict=True)]
        outputs = [score(y, c) for y, c in zip(restored, clean, strict=True)]
        method, base_psnr, base_ssim = best_baseline(name, degraded, clean)
        named = {label: _mean(score(fn(x), c)[0] for x, c in zip(degraded, clean, strict=True))
                 for label, fn in (references or {}).get(name, {}).items()}
        rows.append(Row(name, _mean(s[0] for s in inputs), _mean(s[1] for s in inputs),
                        _mean(s[0] for s in outputs), _mean(s[1] for s in outputs), method, base_psnr, base_ssim,
                        named))
        k = names.index(shown)
        grid.append((name, [degraded[k], restored[k], METHODS[method](degraded[k]), clean[k]]))
        label = "" if name == "clean" else f"input {rows[-1].input_psnr:.2f} -> "
        print(f"  {name:12s} {label}model {rows[-1].restored_psnr:.2f} dB, {method} {base_psnr:.2f} dB",
              file=sys.stderr)
    return rows, grid


def _mean(values) -> float:
    values = list(values)
    return math.inf if any(math.isinf(v) for v in values) else float(np.mean(values))


def conditions(photos: dict[str, np.ndarray], crop: int | None) -> str:
    """The line above the demo's table: what was scored, so that it is not mistaken for the README's
    full-size table (which has BM3D among the classical methods)."""
    size = f"centre-cropped to {crop} px" if crop else "at full size"
    bm3d = "BM3D included" if method_available("bm3d") else \
        "without BM3D (`pip install exda[baselines]`, non-commercial licence): noise goes to NL-means, wavelet or TV"
    return (f"Held-out photos ({', '.join(photos)}) {size}, {len(DEMO_DEGRADATIONS)} degradations at seed "
            f"{DEMO_SEED}; best classical method per degradation, {bm3d}. Mean over the photos.")


def to_markdown(rows: list[Row]) -> str:
    """The results table; the clean row's input is the target itself (identical)."""
    lines = [
        "| degradation | input PSNR / SSIM | default model PSNR / SSIM | best classical (method) PSNR / SSIM "
        "| model - classical |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        given = "identical" if math.isinf(r.input_psnr) else f"{r.input_psnr:.2f} / {r.input_ssim:.4f}"
        base = "identical" if math.isinf(r.baseline_psnr) else f"{r.baseline_psnr:.2f} / {r.baseline_ssim:.4f}"
        gap = "" if math.isinf(r.baseline_psnr) else f"{r.restored_psnr - r.baseline_psnr:+.2f} dB"
        lines.append(f"| {r.degradation} | {given} | {r.restored_psnr:.2f} / {r.restored_ssim:.4f} | "
                     f"({r.baseline}) {base} | {gap} |")
    return "\n".join(lines)


def save_grid(path: Path, grid: list[tuple[str, list[np.ndarray]]], methods: list[str]) -> None:
    """One row per degradation: degraded | default model | best classical | clean, captioned; the format by
    ``path``'s suffix (``.jpg`` keeps photo grids small)."""
    rows = []
    for (name, images), method in zip(grid, methods, strict=True):
        captions = (f"{name}: degraded", "default model", f"best classical: {method}", "clean")
        rows.append(list(zip(images, captions, strict=True)))
    save_image_grid(rows, path, cell_height=2.2, dpi=110)


def held_out_photos(crop: int | None) -> dict[str, np.ndarray]:
    """The held-out natural sample photos, centre-cropped."""
    return {name: np.ascontiguousarray(centre_crop(load_sample(name), crop)) for name in sample_names("heldout")}
