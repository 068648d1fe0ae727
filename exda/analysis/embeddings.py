"""Foundation-model embeddings: is the restored image closer to the clean one than the degraded input?

Embedding: the ImageNet AlexNet shipped for LPIPS (exda/weights/lpips_alex.safetensors); each of its
five ReLU taps is averaged over space and unit-normalised, and the five vectors are concatenated.
Distance: cosine distance (1 - cos) between embeddings, per image; reported per degradation as the
mean of degraded->clean and restored->clean, for every model given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from exda.analysis.common import ProbeSet, restore_all, save_figure, write_json
from exda.metrics_lpips import load_lpips


@torch.inference_mode()
def embed(images: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """N x D AlexNet embeddings (5 pooled, unit-normalised taps concatenated; each block weighs 1/5)."""
    net = load_lpips("alex")
    out = []
    for i in range(0, len(images), batch):
        taps = net.features(images[i:i + batch].float())
        out.append(torch.cat([F.normalize(t.mean(dim=(-2, -1)), dim=1) for t in taps], dim=1) / len(taps) ** 0.5)
    return torch.cat(out)


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return (1.0 - F.cosine_similarity(a, b, dim=1)).double().numpy()


def run_embeddings(models: list[tuple[str, nn.Module]], probe: ProbeSet, out: Path) -> dict[str, Any]:
    """Write embeddings.json and embeddings.png; returns the record."""
    clean = embed(probe.clean)
    degraded = cosine_distance(embed(probe.degraded), clean)
    labels = np.asarray(probe.labels)
    record: dict[str, Any] = {"embedding": "ImageNet AlexNet (LPIPS backbone), pooled unit-normalised relu1-5",
                              "distance": "cosine distance to the clean image's embedding",
                              "degradations": list(probe.degradations), "per_task": {}}
    restored = {label: cosine_distance(embed(restore_all(m, probe.degraded)), clean) for label, m in models}
    for task in probe.degradations:
        sel = labels == task
        row = {"degraded": float(degraded[sel].mean()), "n": int(sel.sum())}
        for label, d in restored.items():
            row[label] = float(d[sel].mean())
            row[f"{label}: fraction closer than input"] = float((d[sel] < degraded[sel]).mean())
        record["per_task"][task] = row
    write_json(out / "embeddings.json", record)
    _plot(record, [label for label, _ in models], out / "embeddings.png")
    return record


def _plot(record: dict[str, Any], labels: list[str], path: Path) -> None:
    import matplotlib.pyplot as plt

    tasks = list(record["per_task"])
    series = ["degraded", *labels]
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(1.3 * len(tasks) + 3, 4))
    for k, s in enumerate(series):
        ax.bar(np.arange(len(tasks)) + (k - (len(series) - 1) / 2) * width,
               [record["per_task"][t][s] for t in tasks], width, label=s if s == "degraded" else f"restored: {s}")
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_ylabel("cosine distance to clean (AlexNet)")
    ax.set_title("foundation-model embedding distance to the clean image (lower is closer)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)  # below: it hides no bar
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path)
