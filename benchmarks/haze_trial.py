"""Why does the photo model leave haze in place? Short arms continued from the long run, each against the
long run at the arm's own start or end, on the run's validation crops.

    python benchmarks/haze_trial.py --arm LABEL CONTROL.safetensors ARM.safetensors [--arm ...]
        ->  benchmarks/results/haze_trial.{json,md}

An arm is the long run's state at some step, trained on for a few dozen steps with a changed task mixture
(for example haze alone: ``exda train --resume --set "data.degradations=[haze]" --set train.resume_exact=false``
on a copy of the run's checkpoint folder). Its control is the long run at the step named in the label. Both
are measured with their raw weights (an arm of under a hundred steps barely moves the EMA weights, decay
0.999) on the run's 108 validation crops (9 held-out photos x 12 tasks, 192 px, seed 0): PSNR per task.

Beside them, on the same crops, the dark channel prior (``exda.baselines.dark_channel``, the best classical
dehazer here) on the hazy crops and on the clean ones: how well a haze estimate from the image alone removes
haze, and what it does to scenes that have none. A blind model must do both: dehaze, and leave clean alone.

And how far one number tells hazy crops from clean ones: the mean dark channel (per-pixel minimum over the
channels, then over 15 x 15 px) of a 192 px crop of each training photo, clean and hazed (one haze draw per
crop, seed 0), as the area under the ROC curve, for the training synthesis (the depth proxy stretched to [0, 1]
in each crop, so its nearest part is unveiled) and for a haze that veils near objects too (depth 0.3 + 0.7 x
proxy).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from exda import baselines
from exda.data.io import to_numpy, to_tensor
from exda.data.layouts import build_dataset
from exda.degradations import get_degradation
from exda.degradations.ops import depth_proxy
from exda.engine.bench import require_checkpoints, run_benchmark
from exda.engine.evaluate import evaluate_model
from exda.errors import UserError
from exda.inference.checkpoint_format import file_digest
from exda.inference.loader import load_network
from exda.metrics import psnr

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
HELDOUT = Path("~/.cache/exda/photo-pool-v2/heldout")
POOL = Path("~/.cache/exda/photo-pool-v2/train")
TASKS = ("clean", "noise15", "noise25", "noise50", "rain", "haze", "motion_blur", "low_light", "snow",
         "underwater", "jpeg", "random_mix")


def validation_set(heldout: Path):
    """The long run's validation crops (configs/default_photo.yaml: val_patch_size 192, val_max_items 108)."""
    return build_dataset("synthetic", heldout, "val", degradations=TASKS, patch_size=192, seed=0, length=108)


def measure(checkpoint: Path, heldout: Path) -> dict:
    """PSNR per task (and their average) of ``checkpoint``'s raw weights on the validation crops."""
    net, info = load_network(checkpoint, use_ema=False)
    per_task = evaluate_model(net, validation_set(heldout)).per_task
    return {"checkpoint": str(checkpoint), "sha256": file_digest(checkpoint)["sha256"], "step": info.step,
            "psnr": {task: round(m["psnr"], 3) for task, m in per_task.items()}}


def dark_channel_rows(heldout: Path) -> dict:
    """Mean / min PSNR of the dark channel prior (and of the input) on the hazy and the clean validation crops."""
    found: dict[str, dict[str, list[float]]] = {"haze": {"input": [], "dark_channel": []},
                                                "clean": {"dark_channel": []}}
    for item in validation_set(heldout):
        if item["task"] not in found:
            continue
        lq, gt = item["lq"][None], item["gt"][None]
        restored = to_tensor(np.asarray(baselines.dark_channel(to_numpy(item["lq"])), dtype=np.float32))[None]
        rows = found[item["task"]]
        if "input" in rows:  # a clean crop is its own target
            rows["input"].append(float(psnr(lq, gt)[0]))
        rows["dark_channel"].append(float(psnr(restored, gt)[0]))
    return {task: {method: {"mean": round(float(np.mean(v)), 3), "min": round(float(np.min(v)), 3), "count": len(v)}
                   for method, v in rows.items()} for task, rows in found.items()}


def mean_dark_channel(x: torch.Tensor, window: int = 15) -> float:
    """The mean over pixels of the dark channel of ``x`` (1 x 3 x H x W): He et al.'s haze cue."""
    darkest = x.amin(dim=1, keepdim=True)
    return float(-torch.nn.functional.max_pool2d(-darkest, window, 1, window // 2).mean())


def roc_auc(positives: list[float], negatives: list[float]) -> float:
    """P(a positive scores above a negative), ties counted half."""
    pos, neg = np.asarray(positives)[:, None], np.asarray(negatives)[None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


def separability(pool: Path) -> dict:
    """Mean dark channel of clean and hazed training crops, and the AUC of hazy against clean."""
    haze = get_degradation("haze")
    generator = torch.Generator().manual_seed(0)
    scores: dict[str, list[float]] = {"clean": [], "stretched_proxy": [], "near_veiled": []}
    for item in build_dataset("synthetic", pool, "val", degradations=("clean",), patch_size=192, seed=0):
        clean = item["gt"][None]
        params = haze.sample_params(clean, generator, 1.0)
        scores["clean"].append(mean_dark_channel(clean))
        scores["stretched_proxy"].append(mean_dark_channel(haze.apply(clean, **params)))
        near_veiled = 0.3 + 0.7 * depth_proxy(clean)
        scores["near_veiled"].append(mean_dark_channel(haze.apply(clean, **params, depth=near_veiled)))
    return {"crops": len(scores["clean"]),
            "mean_dark_channel": {k: round(float(np.mean(v)), 4) for k, v in scores.items()},
            "auc": {k: round(roc_auc(scores[k], scores["clean"]), 4) for k in ("stretched_proxy", "near_veiled")}}


def to_markdown(record: dict) -> str:
    shown = ("average", *TASKS)
    lines = [f"# Haze trial (`{record['command']}`)", "",
             f"{record['machine'].get('cpu', '')}, {record['machine'].get('date', '')}. PSNR (dB) of the raw weights "
             "on the long run's 108 validation crops (9 held-out photos x 12 tasks, 192 px, seed 0); arm - control "
             "in the last row of each arm.", "",
             "| arm | model | step | " + " | ".join(shown) + " |",
             "|---|---|---:|" + "---:|" * len(shown)]
    for arm in record["arms"]:
        rows = {role: arm[role]["psnr"] for role in ("control", "arm")}
        for role in ("control", "arm"):
            lines.append(f"| {arm['label']} | {role} | {arm[role]['step']} | "
                         + " | ".join(f"{rows[role][t]:.2f}" for t in shown) + " |")
        lines.append(f"| {arm['label']} | arm - control | | "
                     + " | ".join(f"{rows['arm'][t] - rows['control'][t]:+.2f}" for t in shown) + " |")
    dcp = record["dark_channel"]
    lines += ["", "The dark channel prior on the same crops (mean / min PSNR, dB):", "",
              "| crops | input | dark channel |", "|---|---|---|"]
    for task in ("haze", "clean"):
        row = dcp[task]
        shown_input = f"{row['input']['mean']:.2f} / {row['input']['min']:.2f}" if "input" in row else "(itself)"
        lines.append(f"| {task} ({row['dark_channel']['count']}) | {shown_input} | "
                     f"{row['dark_channel']['mean']:.2f} / {row['dark_channel']['min']:.2f} |")
    sep = record["separability"]
    dark = sep["mean_dark_channel"]
    lines += ["", f"One number, hazy against clean: the mean dark channel (15 px) of {sep['crops']} training crops "
              "(192 px), clean and hazed (one draw each, seed 0):", "",
              "| haze | mean dark channel | AUC, hazy vs clean |", "|---|---:|---:|",
              f"| none (clean) | {dark['clean']:.3f} | |",
              f"| training synthesis (depth proxy stretched per crop) | {dark['stretched_proxy']:.3f} "
              f"| {sep['auc']['stretched_proxy']:.3f} |",
              f"| near objects veiled too (depth 0.3 + 0.7 x proxy) | {dark['near_veiled']:.3f} "
              f"| {sep['auc']['near_veiled']:.3f} |"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arm", nargs=3, action="append", required=True, metavar=("LABEL", "CONTROL", "ARM"),
                        help="a label, the long run's checkpoint to compare with, the arm's checkpoint")
    parser.add_argument("--heldout", type=Path, default=HELDOUT, help=f"the held-out photos (default {HELDOUT})")
    parser.add_argument("--pool", type=Path, default=POOL, help=f"the training photos (default {POOL})")
    parser.add_argument("--out", type=Path, default=RESULTS / "haze_trial.json")
    args = parser.parse_args(argv)
    return run_benchmark("haze_trial", argv, args.out, lambda: trial(args.arm, args.heldout, args.pool), to_markdown)


def trial(arms: list[list[str]], heldout: Path, pool: Path) -> dict:
    """Each arm against its control on the validation crops, the dark channel rows and the separability."""
    require_checkpoints([path for _, *paths in arms for path in paths])
    heldout, pool = heldout.expanduser(), pool.expanduser()
    for folder in (heldout, pool):
        if not folder.is_dir():
            raise UserError(f"no photos in {folder} (python scripts/photo_pool.py)")
    record: dict = {"tasks": TASKS, "arms": []}
    for label, control, arm in arms:
        entry: dict = {"label": label}
        for role, checkpoint in (("control", Path(control)), ("arm", Path(arm))):
            entry[role] = measure(checkpoint, heldout)
            print(f"haze_trial: {label} {role}: {entry[role]['psnr']['average']:.3f} dB", file=sys.stderr,
                  flush=True)
        record["arms"].append(entry)
    record["dark_channel"] = dark_channel_rows(heldout)
    record["separability"] = separability(pool)
    return record


if __name__ == "__main__":
    sys.exit(main())
