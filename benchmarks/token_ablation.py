"""Does a trained ExDA network use what its global token says? The token emptied of content, or removed.

    python benchmarks/token_ablation.py --checkpoint EXDA.safetensors [--twin PLAIN.safetensors]
                                        [--pool DIR] [--max-side 256]
        ->  benchmarks/results/token_ablation.{json,md}

The network is evaluated three ways on the held-out photos (default: the photo pool's, downscaled to at most
``--max-side`` px) under the 12 tasks of ``benchmarks/scale_ablation.py``, with the same weights:

- ``intact``: as trained.
- ``flat``: every global spatial token replaced by a token of ones, the token a spatially uniform input
  gives (all G x G cells equal, so the softmax is uniform; with ``standardized`` softmax exactly so). The
  slot, its scale and the keys it adds stay; what the token says about *this* image goes.
- ``removed``: every token taken out: the plain attention of the same weights.

``flat`` - ``intact`` per task measures how much the network uses the token's content; ``removed`` -
``intact`` how much it uses the slot at all. A plain twin (``--twin``) is scored alongside for scale.
Per task: PSNR, SSIM and the mean output - target shift per channel (8-bit levels), all in fp32. Only the
``row`` token (the default) has a content-free form defined here; another kind is one error line.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from exda.data.io import load_photos, save_image
from exda.data.layouts import build_dataset
from exda.engine.bench import require_checkpoints, run_benchmark
from exda.engine.evaluate import evaluate_model
from exda.errors import UserError
from exda.inference.checkpoint_format import file_digest
from exda.inference.loader import load_network
from exda.layers.global_token import GlobalSpatialToken

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
POOL = Path("~/.cache/exda/photo-pool-v2")
TASKS = ("clean", "noise15", "noise25", "noise50", "rain", "haze", "motion_blur", "low_light", "snow",
         "underwater", "jpeg", "random_mix")  # as benchmarks/scale_ablation.py
VARIANTS = ("intact", "flat", "removed")


class FlatToken(GlobalSpatialToken):
    """A ``row`` token that says nothing about its input: ones, the token of a spatially uniform input."""

    def tokens(self, x_in: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x_in.shape
        return x_in.new_ones(b, self.heads, 1, h * w)


def token_holders(net: nn.Module) -> list[nn.Module]:
    """The attention modules of ``net`` that carry a global spatial token (their ``token`` attribute)."""
    return [module for module in net.modules() if isinstance(getattr(module, "token", None), GlobalSpatialToken)]


@contextmanager
def token_variant(net: nn.Module, variant: str) -> Iterator[None]:
    """``net`` with every token as ``variant`` says, for the duration of the block; restored afterwards."""
    holders = token_holders(net)
    originals = [holder.token for holder in holders]
    if variant == "flat" and any(token.kind != "row" for token in originals):
        raise UserError("a content-free token is defined for global_token='row' only")
    for holder, token in zip(holders, originals, strict=True):
        if variant == "flat":
            holder.token = FlatToken(token.heads, token.kind, token.options)
        elif variant == "removed":
            holder.token = None
    try:
        yield
    finally:
        for holder, token in zip(holders, originals, strict=True):
            holder.token = token


def score(net: nn.Module, photos: Path) -> dict[str, dict[str, float]]:
    """Per task: input and restored PSNR, SSIM, and the mean restored - target shift per channel (levels)."""
    dataset = build_dataset("synthetic", photos, "val", degradations=TASKS, patch_size=None, seed=0)
    result = evaluate_model(net, dataset, keep_per_task=len(dataset))
    shifts: dict[str, list[torch.Tensor]] = {}
    for label, (_, restored, target) in zip(result.triplet_labels, result.triplets, strict=True):
        shifts.setdefault(label.split("/")[0], []).append((restored - target).mean(dim=(1, 2)) * 255)
    return {task: {"input_psnr": round(result.per_task[task]["input_psnr"], 3),
                   "psnr": round(result.per_task[task]["psnr"], 3), "ssim": round(result.per_task[task]["ssim"], 5),
                   "shift": [round(float(v), 2) for v in torch.stack(shifts[task]).mean(0)]} for task in TASKS}


def measure(checkpoint: Path, twin: Path | None, pool: Path, max_side: int) -> dict:
    require_checkpoints([checkpoint] + ([twin] if twin else []))
    net, info = load_network(checkpoint)
    if not token_holders(net):
        raise UserError(f"{checkpoint} ({info.arch}) has no global spatial token to take away")
    with tempfile.TemporaryDirectory() as folder:
        photos = Path(folder)
        for name, pixels in load_photos(pool.expanduser() / "heldout", max_side).items():
            save_image(photos / f"{name}.png", pixels)
        record: dict = {"pool": str(pool), "photo_count": len(list(photos.glob("*.png"))), "max_side": max_side,
                        "checkpoint": _describe(checkpoint, info), "variants": {}}
        for variant in VARIANTS:
            start = time.perf_counter()
            with token_variant(net, variant):
                record["variants"][variant] = score(net, photos)
            print(f"token_ablation: {variant} ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
        if twin is not None:
            twin_net, twin_info = load_network(twin)
            record["twin"] = {**_describe(twin, twin_info), "tasks": score(twin_net, photos)}
    record["gain"] = {variant: _gain(record["variants"][variant], record["variants"]["intact"])
                      for variant in VARIANTS[1:]}
    return record


def _describe(path: Path, info) -> dict:
    return {"path": str(path), "sha256": file_digest(path)["sha256"], "model": info.arch, "step": info.step,
            "model_kwargs": info.kwargs}


def _gain(rows: dict, base: dict) -> dict:
    per_task = {task: round(rows[task]["psnr"] - base[task]["psnr"], 3) for task in TASKS}
    return {"per_task": per_task, "mean": round(statistics.fmean(per_task.values()), 3),
            "max_abs": round(max(map(abs, per_task.values())), 3)}


def to_markdown(record: dict) -> str:
    ckpt = record["checkpoint"]
    twin = record.get("twin")
    head = "| task | input | intact | flat | removed | flat - intact | removed - intact |"
    rule = "|---|---|---|---|---|---|---|"
    if twin:
        head, rule = head + f" twin (step {twin['step']}) |", rule + "---|"
    lines = [f"# The global token emptied or removed (`{record['command']}`)", "",
             f"{ckpt['model']} at step {ckpt['step']}, {record['photo_count']} held-out photos from {record['pool']} "
             f"at <= {record['max_side']} px x {len(TASKS)} tasks, fp32; {record['machine']['cpu']}, "
             f"{record['machine']['date']}. PSNR in dB; flat: the token of a uniform input; removed: no token.", "",
             head, rule]
    variants = record["variants"]
    for task in TASKS:
        cells = [f"{variants[v][task]['psnr']:.2f}" for v in VARIANTS]
        gains = [f"{record['gain'][v]['per_task'][task]:+.2f}" for v in VARIANTS[1:]]
        row = f"| {task} | {variants['intact'][task]['input_psnr']:.2f} | " + " | ".join(cells + gains) + " |"
        lines.append(row + (f" {twin['tasks'][task]['psnr']:.2f} |" if twin else ""))
    mean = {v: statistics.fmean(variants[v][t]["psnr"] for t in TASKS) for v in VARIANTS}
    row = (f"| mean | | {mean['intact']:.2f} | {mean['flat']:.2f} | {mean['removed']:.2f} | "
           f"{record['gain']['flat']['mean']:+.2f} | {record['gain']['removed']['mean']:+.2f} |")
    if twin:
        row += f" {statistics.fmean(twin['tasks'][t]['psnr'] for t in TASKS):.2f} |"
    lines += [row, "", "Mean shift on clean inputs (restored - clean, R, G, B levels): " + "; ".join(
        f"{v} {', '.join(f'{s:+.2f}' for s in variants[v]['clean']['shift'])}" for v in VARIANTS)
        + (f"; twin {', '.join(f'{s:+.2f}' for s in twin['tasks']['clean']['shift'])}" if twin else "") + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="an exda checkpoint with a global token")
    parser.add_argument("--twin", type=Path, help="a plain twin's checkpoint, scored alongside")
    parser.add_argument("--pool", type=Path, default=POOL, help=f"photo pool with a heldout/ folder (default {POOL})")
    parser.add_argument("--max-side", type=int, default=256, help="downscale photos to this longer side (px)")
    parser.add_argument("--out", type=Path, default=RESULTS / "token_ablation.json", help="the JSON (.md beside it)")
    args = parser.parse_args(argv)
    return run_benchmark("token_ablation", argv, args.out,
                         lambda: measure(args.checkpoint, args.twin, args.pool, args.max_side), to_markdown)


if __name__ == "__main__":
    sys.exit(main())
