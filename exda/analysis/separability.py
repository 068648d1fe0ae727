"""How well a model's per-layer descriptors separate degradations.

Two descriptors per transformer block (encoder and latent levels), read at the block's input:
``token``: the global spatial token's cell weights (softmax over the G x G pooled cells, per channel;
``TransformerBlock.token_cell_weights``), only for blocks that have a token; ``pooled``: the block
input averaged over space (one number per channel), available for any backbone. Scores, on
standardised descriptors: cross-validated linear-probe accuracy (PCA to 32 components fitted in
each training fold, then logistic regression; stratified 5-fold), silhouette score (euclidean) and
the Fisher ratio trace(S_between) / trace(S_within).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from exda.analysis.common import ProbeSet, save_figure, write_json
from exda.layers.block import TransformerBlock

PROBE_DIMS = 32


def block_descriptors(model: nn.Module, images: torch.Tensor, batch: int = 16) -> dict[str, dict[str, np.ndarray]]:
    """{layer: {"token": N x D or absent, "pooled": N x C}} for every encoder/latent TransformerBlock."""
    blocks = [(name, m) for name, m in model.named_modules()
              if isinstance(m, TransformerBlock) and name.startswith(("encoders", "latent"))]
    if not blocks:
        raise ValueError("the model has no encoder/latent TransformerBlock to read descriptors from")
    store: dict[str, dict[str, list[np.ndarray]]] = {name: {"token": [], "pooled": []} for name, _ in blocks}

    def hook(name: str, block: TransformerBlock):
        def read(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0]
            store[name]["pooled"].append(x.mean(dim=(-2, -1)).float().numpy())
            weights = block.token_cell_weights(x)
            if weights is not None:
                store[name]["token"].append(weights.flatten(1).float().numpy())
        return read

    handles = [m.register_forward_pre_hook(hook(name, m)) for name, m in blocks]
    try:
        with torch.inference_mode():
            for i in range(0, len(images), batch):
                model(images[i:i + batch])
    finally:
        for h in handles:
            h.remove()
    return {name: {kind: np.concatenate(v) for kind, v in d.items() if v} for name, d in store.items()}


def scores(features: np.ndarray, labels: list[str], seed: int = 0) -> dict[str, float]:
    """Linear-probe accuracy (5-fold CV), silhouette and Fisher ratio of standardised features."""

    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # BLAS threads oversubscribe a shared CPU: 40x slower on 2 busy cores
        return _scores(features, labels, seed)


def _scores(features: np.ndarray, labels: list[str], seed: int) -> dict[str, float]:
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import silhouette_score
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(labels)
    x = StandardScaler().fit_transform(features.astype(np.float64))
    folds = min(5, int(min(np.unique(y, return_counts=True)[1])))
    if folds < 2:
        raise ValueError("every degradation needs at least 2 images for a cross-validated probe")
    # PCA to at most PROBE_DIMS components inside each fold keeps the probe fast and comparable across widths.
    probe = make_pipeline(StandardScaler(), PCA(min(PROBE_DIMS, features.shape[1], len(y) // 2)),
                          LogisticRegression(max_iter=500, C=1.0))
    acc = cross_val_score(probe, features.astype(np.float64), y,
                          cv=StratifiedKFold(folds, shuffle=True, random_state=seed)).mean()
    mean = x.mean(axis=0)
    between = within = 0.0
    for c in np.unique(y):
        xc = x[y == c]
        between += len(xc) * float(np.sum((xc.mean(axis=0) - mean) ** 2))
        within += float(np.sum((xc - xc.mean(axis=0)) ** 2))
    return {"probe_accuracy": float(acc), "silhouette": float(silhouette_score(x, y)),
            "fisher_ratio": between / max(within, 1e-12), "dims": int(features.shape[1]), "folds": folds}


def run_separability(models: list[tuple[str, nn.Module]], probe: ProbeSet, out: Path, seed: int = 0) -> dict[str, Any]:
    """Score every (model, layer, descriptor); write separability.json, separability.png, embedding_2d.png."""
    record: dict[str, Any] = {"degradations": list(probe.degradations), "n_images": len(probe.labels),
                              "chance": 1.0 / len(probe.degradations), "models": {}}
    kept: dict[str, np.ndarray] = {}
    for label, model in models:
        desc = block_descriptors(model, probe.degraded)
        layers = {name: {kind: scores(f, probe.labels, seed) for kind, f in d.items()} for name, d in desc.items()}
        record["models"][label] = layers
        last = list(desc)[-1]
        for kind, f in desc[last].items():
            kept[f"{label}: {kind} @ {last}"] = f
    write_json(out / "separability.json", record)
    _plot_scores(record, out / "separability.png")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        _plot_2d(kept, probe.labels, out / "embedding_2d.png", seed)
    return record


def _plot_scores(record: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    metrics = ("probe_accuracy", "silhouette", "fisher_ratio")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for label, layers in record["models"].items():
        names = list(layers)
        for kind, style in (("token", "-o"), ("pooled", "--s")):
            if not all(kind in layers[n] for n in names):
                continue
            for ax, m in zip(axes, metrics, strict=True):
                ax.plot(range(len(names)), [layers[n][kind][m] for n in names], style, label=f"{label}: {kind}")
    for ax, m in zip(axes, metrics, strict=True):
        ax.set_xticks(range(len(names)), names, rotation=60, fontsize=7)
        ax.set_title(m.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0].axhline(record["chance"], color="grey", lw=0.8, ls=":", label="chance")
    handles, entries = axes[0].get_legend_handles_labels()  # below the panels: it hides no curve
    fig.legend(handles, entries, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=8)
    fig.suptitle(f"separability of {len(record['degradations'])} degradations, {record['n_images']} images, per block")
    save_figure(fig, path)


def _plot_2d(features: dict[str, np.ndarray], labels: list[str], path: Path, seed: int) -> None:
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(labels)
    classes = list(dict.fromkeys(labels))
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(2, len(features), figsize=(4.2 * len(features), 8), squeeze=False)
    for col, (title, f) in enumerate(features.items()):
        x = StandardScaler().fit_transform(f.astype(np.float64))
        pca = PCA(2, random_state=seed).fit_transform(x)
        tsne = TSNE(2, perplexity=min(30.0, (len(x) - 1) / 3), random_state=seed, init="pca").fit_transform(x)
        for row, (points, name) in enumerate(((pca, "PCA"), (tsne, "t-SNE"))):
            ax = axes[row, col]
            for k, c in enumerate(classes):
                ax.scatter(points[y == c, 0], points[y == c, 1], s=9, color=colours(k % 10), label=c)
            ax.set_title(f"{name}\n{textwrap.fill(title, 48)}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    handles, entries = axes[0, 0].get_legend_handles_labels()  # below the panels: it hides no point
    fig.legend(handles, entries, loc="upper center", bbox_to_anchor=(0.5, 0.02), ncol=len(classes), fontsize=9,
               markerscale=2)
    fig.tight_layout()
    save_figure(fig, path)
