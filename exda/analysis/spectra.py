"""Radially averaged power spectra of images and of features inside the value path.

Images: luma of clean, degraded and restored images; spectrum |FFT|^2 (mean removed, Hann window),
averaged over rings of equal normalised frequency (0 = DC, 0.5 = Nyquist), then over images.
Features: at every attention's value path (``attn.value``), the value before (v) and after the value
transform (phi(v)), per channel, averaged over channels, images and blocks of a level. For a model
without a value transform both are the same tensor. Each spectrum is normalised to unit total power, so
the curves compare shapes (where the energy sits), not scales.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from exda.analysis.common import ProbeSet, restore_all, save_figure, write_json

BINS = 32


def radial_spectrum(x: torch.Tensor, bins: int = BINS) -> np.ndarray:
    """Mean over the leading dims of the ring-averaged power spectrum of ... x H x W maps, unit total power."""
    x = x.double()
    h, w = x.shape[-2:]
    window = torch.outer(torch.hann_window(h, periodic=False, dtype=x.dtype), torch.hann_window(w, periodic=False,
                                                                                             dtype=x.dtype))
    x = (x - x.mean(dim=(-2, -1), keepdim=True)) * window
    power = torch.fft.fft2(x).abs().square().reshape(-1, h, w).mean(0)
    fy = torch.fft.fftfreq(h, dtype=x.dtype)[:, None]
    fx = torch.fft.fftfreq(w, dtype=x.dtype)[None, :]
    radius = torch.sqrt(fy**2 + fx**2).flatten()
    index = torch.clamp((radius / 0.5 * bins).long(), max=bins - 1)  # corners beyond Nyquist join the last ring
    sums = torch.zeros(bins, dtype=x.dtype).index_add_(0, index, power.flatten())
    counts = torch.zeros(bins, dtype=x.dtype).index_add_(0, index, torch.ones_like(radius))
    ring = (sums / counts.clamp_min(1)).numpy()
    return ring / max(ring.sum(), 1e-30)


def _luma(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]) if x.shape[1] == 3 else x[:, 0]


def value_path_spectra(model: nn.Module, images: torch.Tensor) -> dict[str, dict[str, np.ndarray]]:
    """{level: {"v": spectrum, "phi(v)": spectrum}} over every ``attn.value`` module, grouped by level."""
    sums: dict[str, dict[str, list[np.ndarray]]] = {}

    def hook(level: str):
        def read(_m: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            entry = sums.setdefault(level, {"v": [], "phi(v)": []})
            entry["v"].append(radial_spectrum(args[0]))
            entry["phi(v)"].append(radial_spectrum(output))
        return read

    handles = []
    for name, module in model.named_modules():
        if name.endswith("attn.value"):
            handles.append(module.register_forward_hook(hook(name.split(".")[0] + "." + name.split(".")[1]
                                                             if name.startswith(("encoders", "decoders"))
                                                             else name.split(".")[0])))
    if not handles:
        raise ValueError("the model has no attention value path (attn.value) to hook")
    try:
        with torch.inference_mode():
            for i in range(0, len(images), 8):
                model(images[i:i + 8])
    finally:
        for h in handles:
            h.remove()
    return {level: {k: np.mean(v, axis=0) for k, v in d.items()} for level, d in sums.items()}


def run_spectra(models: list[tuple[str, nn.Module]], probe: ProbeSet, out: Path) -> dict[str, Any]:
    """Write spectra.json and spectra.png (images per degradation; value-path features per level)."""
    labels = np.asarray(probe.labels)
    freq = ((np.arange(BINS) + 0.5) / BINS * 0.5).tolist()
    record: dict[str, Any] = {"frequency": freq, "images": {}, "features": {}}
    restored = {label: restore_all(m, probe.degraded) for label, m in models}
    for task in probe.degradations:
        sel = torch.from_numpy(labels == task)
        row = {"clean": radial_spectrum(_luma(probe.clean[sel])).tolist(),
               "degraded": radial_spectrum(_luma(probe.degraded[sel])).tolist()}
        for label, r in restored.items():
            row[f"restored: {label}"] = radial_spectrum(_luma(r[sel])).tolist()
        record["images"][task] = row
    for label, m in models:
        spectra = value_path_spectra(m, probe.degraded)
        record["features"][label] = {lvl: {k: v.tolist() for k, v in d.items()} for lvl, d in spectra.items()}
        diff = {lvl: float(np.abs(np.log(d["phi(v)"] + 1e-30) - np.log(d["v"] + 1e-30)).mean())
                for lvl, d in spectra.items()}
        record["features"][label]["mean |log ratio| phi(v) vs v"] = diff
    write_json(out / "spectra.json", record)
    _plot(record, out / "spectra.png")
    return record


def _plot(record: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    freq = record["frequency"]
    tasks = list(record["images"])
    models = list(record["features"])
    cols = max(len(tasks), 1)
    fig, axes = plt.subplots(1 + len(models), cols, figsize=(3.2 * cols, 3.0 * (1 + len(models))), squeeze=False)
    for c, task in enumerate(tasks):
        ax = axes[0, c]
        for name, spec in record["images"][task].items():
            ax.semilogy(freq, spec, label=name, lw=1.2, ls="--" if name == "clean" else "-")
        ax.set_title(f"image luma: {task}", fontsize=9)
        ax.set_xlabel("cycles / pixel", fontsize=8)
    handles, entries = axes[0, 0].get_legend_handles_labels()  # beside the grid: it hides no curve
    fig.legend(handles, entries, loc="upper left", bbox_to_anchor=(1.0, 0.98), fontsize=8, title="image rows")
    for r, label in enumerate(models, start=1):
        levels = [k for k in record["features"][label] if not k.startswith("mean")]
        for c in range(cols):
            ax = axes[r, c]
            if c >= len(levels):
                ax.axis("off")
                continue
            d = record["features"][label][levels[c]]
            for k in ("v", "phi(v)"):
                ax.semilogy(freq, d[k], label=k)
            ax.set_title(f"{levels[c]} value path", fontsize=9)
            ax.set_xlabel("cycles / pixel", fontsize=8)
        axes[r, 0].legend(fontsize=7)
        axes[r, 0].set_ylabel(label.replace(" (", "\n("), fontsize=7)
    fig.tight_layout(h_pad=1.5)
    save_figure(fig, path)
