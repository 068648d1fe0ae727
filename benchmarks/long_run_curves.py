"""Curves of the long default-photo run and the runs beside it, from their committed validation logs.

    python benchmarks/long_run_curves.py          # reads training/*/validation.jsonl

Every validation of every run (all 9 held-out photos under all 12 tasks, 192 px crops, EMA weights) is a
line of ``training/<run>/validation.jsonl``. This script draws per-task PSNR against the step (all runs on
one plot per task) and mean PSNR against the run's wall-clock hours, and writes the paired tables (ExDA -
plain per seed, seed 0 - seed 1 per network, the whole pool - the small one, each primitive - plain) at every
step both runs validated: ``benchmarks/results/long_run_curves.{png,json,md}``. A run that continues another
(``CONTINUES``: cycle 2 of the shipped photo model) is drawn on from that run's last step and hour.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RUNS = {
    "default_photo": "ExDA (both primitives)",
    "default_photo_plain": "plain twin (both off)",
    "default_photo_seed1": "ExDA, seed 1",
    "default_photo_plain_seed1": "plain, seed 1",
    "default_photo_pool_small": "ExDA, small pool (27 photos)",
    "default_photo_value_only": "+ value transform only",
    "default_photo_token_only": "+ global token only",
    "default_photo_plain_cycle2": "plain twin, cycle 2 (the shipped model trained on)",
}
PAIRS = (  # (a, b): a - b at every step both validated (the same validation set: data.val_seed)
    ("default_photo", "default_photo_plain"),
    ("default_photo_seed1", "default_photo_plain_seed1"),
    ("default_photo", "default_photo_seed1"),
    ("default_photo_plain", "default_photo_plain_seed1"),
    ("default_photo", "default_photo_pool_small"),
    ("default_photo_value_only", "default_photo_plain"),
    ("default_photo_token_only", "default_photo_plain"),
)


# A run that starts from another's last weights (train.init_from): its steps and hours count on from that run's.
CONTINUES = {"default_photo_plain_cycle2": "default_photo_plain"}


def read(run: Path) -> list[dict]:
    path = run / "validation.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--training", type=Path, default=ROOT / "training")
    parser.add_argument("--out", type=Path, default=RESULTS / "long_run_curves.json")
    args = parser.parse_args()
    curves = {name: read(args.training / name) for name in RUNS}
    curves = {name: records for name, records in curves.items() if records}
    for name, parent in CONTINUES.items():
        if name in curves and parent in curves:
            start = curves[parent][-1]
            curves[name] = [{**r, "step": r["step"] + start["step"],
                             "train_hours": r["train_hours"] + start["train_hours"]} for r in curves[name]]
    if not curves:
        print(f"no validation.jsonl under {args.training}", file=sys.stderr)
        return 1
    tasks = list(next(iter(curves.values()))[0]["per_task"])
    columns = 4
    rows = -(-(len(tasks) + 1) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        for name, records in curves.items():
            ax.plot([r["step"] for r in records], [r["per_task"][task]["psnr"] for r in records],
                    marker=".", label=RUNS[name])
        ax.set_title(task)
        ax.set_xlabel("step")
        ax.set_ylabel("PSNR (dB)")
        ax.grid(alpha=0.3)
    ax = axes.flat[len(tasks)]
    for name, records in curves.items():
        ax.plot([r["train_hours"] for r in records], [r["mean_psnr"] for r in records], marker=".",
                label=RUNS[name])
    ax.set_title("mean over tasks")
    ax.set_xlabel("wall-clock hours of the run")
    ax.set_ylabel("PSNR (dB)")
    ax.grid(alpha=0.3)
    for extra in list(axes.flat)[len(tasks) + 1 :]:
        extra.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), bbox_to_anchor=(0.5, 0.0))
    fig.suptitle("Held-out validation (9 photos x 12 tasks, 192 px crops, EMA weights)")
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out.with_suffix(".png"), dpi=110)
    plt.close(fig)

    paired = []
    for a, b in PAIRS:
        if a not in curves or b not in curves:
            continue
        by_step = [{r["step"]: r for r in curves[name]} for name in (a, b)]
        for step in sorted(set(by_step[0]) & set(by_step[1])):
            first, second = by_step[0][step], by_step[1][step]
            gains = {t: first["per_task"][t]["psnr"] - second["per_task"][t]["psnr"] for t in tasks}
            paired.append({"a": a, "b": b, "step": step, "gain_per_task": gains,
                           "mean_gain": sum(gains.values()) / len(gains),
                           "tasks_won": sum(g > 0 for g in gains.values()), "tasks": len(tasks)})
    result = {"command": "python benchmarks/long_run_curves.py", "runs": curves, "paired": paired}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# Long run: held-out validation curves (`python benchmarks/long_run_curves.py`)", ""]
    for name, records in curves.items():
        last = records[-1]
        lines.append(f"- {RUNS[name]} (`training/{name}`): {len(records)} validations, last at step "
                     f"{last['step']} after {last['train_hours']:.2f} h: mean PSNR {last['mean_psnr']:.2f} dB")
    for a, b in PAIRS:
        rows = [p for p in paired if (p["a"], p["b"]) == (a, b)]
        if not rows:
            continue
        lines += ["", f"{RUNS[a]} - {RUNS[b]} (`{a}` - `{b}`), PSNR dB:", "",
                  "| step | mean | tasks won | " + " | ".join(tasks) + " |", "|---|---|---|" + "---|" * len(tasks)]
        for p in rows:
            cells = " | ".join(f"{p['gain_per_task'][t]:+.2f}" for t in tasks)
            lines.append(f"| {p['step']} | {p['mean_gain']:+.2f} | {p['tasks_won']}/{p['tasks']} | {cells} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
