"""Evaluate a restoration model on a dataset: per-task PSNR/SSIM/RMSE tables and comparison grids.

Protocol (see :mod:`exda.metrics`): outputs are clamped to [0, 1]; PSNR/SSIM on RGB with data range 1
by default; ``y_channel`` and ``crop_border`` as BasicSR; ``ssim_gaussian`` for the 11x11 gaussian SSIM,
with population covariance unless ``ssim_sample_covariance`` (MoCE-IR's test.py: both, see
:data:`exda.metrics.SSIM_PROTOCOLS`);
``data_range_from_gt`` with ``ssim_gaussian`` is AMIR's medical protocol (range = GT max - min).
Each task's numbers are means over its images; the ``average`` row is the mean over tasks, as papers
report it. Identical input and target images give an infinite PSNR, which propagates into the means.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from exda.atomic import atomic_write
from exda.data import collate_restoration
from exda.errors import UserError
from exda.figures import save_image_grid
from exda.inference.tiling import restore
from exda.metrics import gt_data_range, psnr, rmse, ssim
from exda.metrics_lpips import lpips

Triplet = tuple[Tensor, Tensor, Tensor]  # (input, restored, target), each C x H x W on the CPU
METRIC_KEYS: tuple[str, ...] = ("input_psnr", "input_ssim", "input_rmse", "psnr", "ssim", "rmse")
LPIPS_KEYS: tuple[str, ...] = ("input_lpips", "lpips")  # present only when evaluate_model(lpips_net=...)
AVERAGE_ROW = "average"


@dataclass
class EvalResult:
    """Per-task means, per-image numbers, the protocol used, and a few images for a comparison grid."""

    per_task: dict[str, dict[str, float]]
    per_image: list[dict[str, Any]]
    settings: dict[str, Any]
    triplets: list[Triplet] = field(default_factory=list)
    triplet_labels: list[str] = field(default_factory=list)  # "task/name" of each kept triplet

    def to_markdown(self) -> str:
        """A table with one row per task: input PSNR/SSIM | restored PSNR/SSIM | RMSE | n."""
        has_lpips = _has_lpips(self.per_task)
        lpips_head, lpips_rule = (" input / restored LPIPS |", "---|") if has_lpips else ("", "")
        lines = [
            f"| task | input PSNR / SSIM | restored PSNR / SSIM | RMSE |{lpips_head} n |",
            f"|---|---|---|---|{lpips_rule}---|",
        ]
        for task, m in self.per_task.items():
            lpips_cell = f" {m['input_lpips']:.4f} / {m['lpips']:.4f} |" if has_lpips else ""
            lines.append(
                f"| {task} | {m['input_psnr']:.2f} / {m['input_ssim']:.4f} "
                f"| {m['psnr']:.2f} / {m['ssim']:.4f} | {m['rmse']:.4f} |{lpips_cell} {int(m['count'])} |"
            )
        protocol = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        return "\n".join(lines) + f"\n\nProtocol: {protocol}\n"

    def to_csv(self, path: str | Path) -> None:
        """Write the per-task table (one row per task, ``average`` last) as CSV, atomically."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        keys = _metric_keys(self.per_task)
        writer.writerow(["task", "count", *keys])
        for task, m in self.per_task.items():
            writer.writerow([task, int(m["count"]), *(f"{m[k]:.6f}" for k in keys)])
        _write_text(Path(path), buffer.getvalue())

    def to_json(self, path: str | Path) -> None:
        """Write settings, per-task means and per-image numbers as JSON, atomically."""
        record = {"settings": self.settings, "per_task": self.per_task, "per_image": self.per_image}
        # Infinite PSNR (identical images) is not valid JSON; write it as null.
        _write_text(Path(path), json.dumps(finite_or_none(record), indent=2) + "\n")

    def save_grid(self, path: str | Path) -> None:
        """Save the kept triplets as a comparison grid labelled with task and image names."""
        save_comparison_grid(self.triplets, path, labels=self.triplet_labels)


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def finite_or_none(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_or_none(v) for v in value]
    return value


def _image_metrics(
    pred: Tensor, target: Tensor, *, crop_border: int, y_channel: bool, ssim_gaussian: bool, gt_range: bool,
    ssim_sample_covariance: bool | None = None,
) -> dict[str, Tensor]:
    """PSNR, SSIM and RMSE per image of a batch under one protocol."""
    data_range: float | Tensor = gt_data_range(target) if gt_range else 1.0
    common = {"crop_border": crop_border, "y_channel": y_channel, "data_range": data_range}
    return {
        "psnr": psnr(pred, target, **common),
        "ssim": ssim(pred, target, gaussian=ssim_gaussian, sample_covariance=ssim_sample_covariance, **common),
        "rmse": rmse(pred, target, crop_border=crop_border),
    }


def _has_lpips(rows: dict[str, dict[str, Any]] | list[dict[str, Any]]) -> bool:
    first = next(iter(rows.values() if isinstance(rows, dict) else rows), {})
    return LPIPS_KEYS[1] in first


def _metric_keys(rows: dict[str, dict[str, Any]] | list[dict[str, Any]]) -> tuple[str, ...]:
    return METRIC_KEYS + LPIPS_KEYS if _has_lpips(rows) else METRIC_KEYS


def _summarise(per_image: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean of every metric per task (in first-seen order), then the mean over tasks as ``average``."""
    keys = _metric_keys(per_image)
    by_task: dict[str, list[dict[str, Any]]] = {}
    for row in per_image:
        by_task.setdefault(row["task"], []).append(row)
    per_task = {
        task: {**{k: sum(r[k] for r in rows) / len(rows) for k in keys}, "count": float(len(rows))}
        for task, rows in by_task.items()
    }
    if len(per_task) > 1:
        tasks = list(per_task.values())
        per_task[AVERAGE_ROW] = {
            **{k: sum(t[k] for t in tasks) / len(tasks) for k in keys},
            "count": float(len(per_image)),
        }
    return per_task


def evaluate_model(
    model: nn.Module,
    dataset: Dataset,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 1,
    crop_border: int = 0,
    y_channel: bool = False,
    ssim_gaussian: bool = False,
    ssim_sample_covariance: bool | None = None,
    data_range_from_gt: bool = False,
    bf16: bool = False,
    max_items: int | None = None,
    tile: int | None = None,
    tile_overlap: int = 32,
    keep_images: int = 0,
    keep_per_task: int = 0,
    progress: bool = False,
    lpips_net: str | None = None,
) -> EvalResult:
    """Restore every item of ``dataset`` and score it against its ground truth.

    The result keeps (input, restored, target) of the first ``keep_images`` items, and of the first
    ``keep_per_task`` items of every task, for comparison grids.

    Items follow the dataset contract ``{"lq", "gt", "task", "name", "params"}``. Images may differ in
    size, so keep ``batch_size=1`` unless they match. ``lpips_net`` ("alex" or "vgg") adds LPIPS
    columns (``input_lpips``, ``lpips``; images clamped to [0, 1], 1-channel repeated to RGB).
    The model runs in eval mode under inference mode on ``device`` and is returned to its previous
    train/eval mode afterwards.
    """
    if max_items is not None:
        dataset = Subset(dataset, range(min(max_items, len(dataset))))
    if len(dataset) == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_restoration)
    was_training = model.training
    model.to(device).eval()
    options = {"crop_border": crop_border, "y_channel": y_channel, "ssim_gaussian": ssim_gaussian,
               "ssim_sample_covariance": ssim_sample_covariance,
               "gt_range": data_range_from_gt}
    per_image: list[dict[str, Any]] = []
    triplets: list[Triplet] = []
    labels: list[str] = []
    kept_per_task: dict[str, int] = {}
    try:
        for batch in tqdm(loader, desc="eval", unit="batch", disable=not progress):
            lq, gt = batch["lq"].float(), batch["gt"].float()
            restored = restore(model, lq, tile=tile, overlap=tile_overlap, bf16=bf16).clamp(0.0, 1.0)
            try:
                before = _image_metrics(lq, gt, **options)
                after = _image_metrics(restored, gt, **options)
                if lpips_net is not None:
                    before["lpips"] = lpips(lq.clamp(0.0, 1.0), gt.clamp(0.0, 1.0), net=lpips_net)
                    after["lpips"] = lpips(restored, gt.clamp(0.0, 1.0), net=lpips_net)
            except ValueError as err:  # too small for SSIM, crop_border too large, flat target range
                names = ", ".join(f"{task}/{name}" for task, name in zip(batch["task"], batch["name"], strict=True))
                raise UserError(f"cannot score {names}: {err}") from err
            for i in range(lq.shape[0]):
                row = {"task": batch["task"][i], "name": batch["name"][i]}
                row.update({f"input_{k}": v[i].item() for k, v in before.items()})
                row.update({k: v[i].item() for k, v in after.items()})
                per_image.append(row)
                task = row["task"]
                if len(triplets) < keep_images or kept_per_task.get(task, 0) < keep_per_task:
                    kept_per_task[task] = kept_per_task.get(task, 0) + 1
                    triplets.append((lq[i].clone(), restored[i].clone(), gt[i].clone()))
                    labels.append(f"{task}/{row['name']}")
    finally:
        model.train(was_training)
    settings = {"crop_border": crop_border, "y_channel": y_channel, "ssim_gaussian": ssim_gaussian,
                "ssim_sample_covariance": ssim_sample_covariance,
                "data_range_from_gt": data_range_from_gt, "tile": tile, "bf16": bf16, "lpips": lpips_net}
    return EvalResult(_summarise(per_image), per_image, settings, triplets, labels)


def save_comparison_grid(
    triplets: Sequence[Triplet],
    path: str | Path,
    titles: tuple[str, str, str] = ("input", "restored", "target"),
    labels: Sequence[str] | None = None,
) -> None:
    """Save one row of (input, restored, target) per triplet; captions give input and restored PSNR.

    The input is captioned with ``labels[row]`` (e.g. task/image) when given.
    """
    if not triplets:
        raise ValueError("no images to put in a comparison grid")
    rows = []
    for row, (lq, restored, gt) in enumerate(triplets):
        target = gt.unsqueeze(0).double()
        scores = [psnr(img.unsqueeze(0).clamp(0, 1).double(), target).item() for img in (lq, restored)]
        prefix = f"{labels[row]}: " if labels else ""
        captions = (f"{prefix}{titles[0]} {scores[0]:.2f} dB", f"{titles[1]} {scores[1]:.2f} dB", titles[2])
        images = [img.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() for img in (lq, restored, gt)]
        rows.append(list(zip(images, captions, strict=True)))
    save_image_grid(rows, path, cell_height=2.6)
