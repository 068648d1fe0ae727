"""The compute-optimal default photo model: short runs of equal wall-clock time, compared on held-out photos.

    python benchmarks/model_size.py --minutes 25 --data ~/.cache/exda/photo-pool-v2

Each variant is the default recipe (``configs/default_photo.yaml``, 1 thread, data in the main process, as
``benchmarks/train_speed.py`` chose) with another width/depth or patch/batch, trained for ``--minutes`` of
wall-clock by ``exda train`` (``train.time_limit_minutes``), two variants side by side, one thread each (the
way the long run shares the machine with its plain twin). Each run validates on the held-out photos about
three times (192 px crops, every task); the table gives per-task PSNR at the end and the curve of mean PSNR
against wall-clock hours, from each run's ``validation.jsonl``. Results: ``benchmarks/results/model_size.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from exda.models import create_model

RESULTS = Path(__file__).resolve().parent / "results"


# Pinned, so that every variant (and a rerun after the preset changes) trains with the same recipe: the
# preset's values when these runs were made, eager (a compile would take a third of a short run).
RECIPE = ("optim.lr=6e-4", "optim.warmup_iters=100", "optim.weight_decay=1e-4", "train.ema_decay=0.995",
          "train.compile=false", "train.val_lpips='off'", "train.precision=bf16", "train.channels_last=true")


@dataclass(frozen=True)
class Variant:
    name: str
    model: str
    kwargs: str = "{}"  # model.kwargs as YAML
    patch: int = 128
    batch: int = 8
    steps_per_minute: float = 16.0  # a guess, only to place about three validations in the run


VARIANTS = [
    Variant("tiny16", "exda_restormer_tiny", steps_per_minute=16),
    Variant("tiny24", "exda_restormer_tiny", "{dim: 24}", steps_per_minute=9),
    Variant("small32", "exda_restormer_small", steps_per_minute=4),
    Variant("tiny16_p192_b4", "exda_restormer_tiny", patch=192, batch=4, steps_per_minute=14),
]


def command(variant: Variant, pool: Path, out: Path, minutes: float, val_items: int) -> list[str]:
    val_every = max(10, round(variant.steps_per_minute * minutes / 3))
    overrides = [
        f"model.name={variant.model}", f"model.kwargs={variant.kwargs}", f"data.root={pool / 'train'}",
        f"data.val_root={pool / 'heldout'}", f"data.patch_size={variant.patch}", f"data.batch_size={variant.batch}",
        f"data.val_max_items={val_items}", "train.threads=1", "data.num_workers=0", "train.iters=100000",
        "optim.schedule_iters=null", "optim.schedule=wsd", f"train.time_limit_minutes={minutes}",
        f"train.val_every={val_every}", "train.ckpt_every=0", *RECIPE,
    ]
    cmd = [sys.executable, "-m", "exda", "train", "--config", "default_photo", "--out", str(out)]
    for override in overrides:
        cmd += ["--set", override]
    return cmd


def finished(out: Path) -> bool:
    """A kept run that reached its time limit (``--keep``): summarised again, not rerun."""
    log = out / "train.log"
    return log.is_file() and "reached at step" in log.read_text()


def summarise(variant: Variant, out: Path) -> dict:
    records = [json.loads(line) for line in (out / "validation.jsonl").read_text().splitlines()]
    model = create_model(variant.model, **json.loads(json.dumps(_yaml(variant.kwargs))))
    final = records[-1]
    return {
        "name": variant.name, "model": variant.model, "kwargs": _yaml(variant.kwargs), "patch": variant.patch,
        "batch": variant.batch, "params": sum(p.numel() for p in model.parameters()),
        "steps": final["step"], "hours": final["train_hours"], "final_mean_psnr": final["mean_psnr"],
        "final_per_task": {task: m["psnr"] for task, m in final["per_task"].items()},
        "curve": [{"step": r["step"], "hours": r["train_hours"], "mean_psnr": r["mean_psnr"]} for r in records],
    }


def _yaml(text: str) -> dict:
    import yaml

    return yaml.safe_load(text) or {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("~/.cache/exda/photo-pool-v2"),
                        help="photo pool with train/ and heldout/ (scripts/photo_pool.py)")
    parser.add_argument("--minutes", type=float, default=25.0, help="wall-clock minutes per run")
    parser.add_argument("--val-items", type=int, default=48, help="held-out validation crops (every task)")
    parser.add_argument("--only", nargs="+", metavar="NAME")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the run folders here (a run already finished there is not run again)")
    parser.add_argument("--out", type=Path, default=RESULTS / "model_size.json")
    args = parser.parse_args()
    pool = args.data.expanduser()
    chosen = [v for v in VARIANTS if not args.only or v.name in args.only]
    rows = []
    with tempfile.TemporaryDirectory(prefix="exda-model-size-") as tmp:
        runs_dir = args.keep or Path(tmp)
        runs_dir.mkdir(parents=True, exist_ok=True)
        for first in range(0, len(chosen), 2):  # two at a time, one thread each
            pair = [v for v in chosen[first : first + 2] if not finished(runs_dir / v.name)]
            rows += [summarise(v, runs_dir / v.name) for v in chosen[first : first + 2] if v not in pair]
            procs = []
            for variant in pair:
                out = runs_dir / variant.name
                log = open(runs_dir / f"{variant.name}.stdout", "w")  # noqa: SIM115 - closed below
                procs.append((variant, out, log, subprocess.Popen(
                    command(variant, pool, out, args.minutes, args.val_items), stdout=log, stderr=log,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"})))
            for variant, out, log, proc in procs:
                if proc.wait() != 0:
                    raise SystemExit(f"{variant.name} failed; see {runs_dir / (variant.name + '.stdout')}")
                log.close()
                rows.append(summarise(variant, out))
                print(f"{variant.name:16s} {rows[-1]['params']:>10,} params  {rows[-1]['steps']:5d} steps  "
                      f"mean PSNR {rows[-1]['final_mean_psnr']:.2f} dB", flush=True)
    tasks = list(rows[0]["final_per_task"])
    result = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__,
        "minutes": args.minutes, "val_items": args.val_items, "data": str(pool), "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Model size at equal wall-clock (`{result['command']}`)", "",
        f"{result['date']}, torch {result['torch']}; {args.minutes:g} min per run, two runs side by side, one "
        f"thread each; held-out validation: {args.val_items} crops of 192 px over every task (EMA weights).", "",
        "| variant | params | patch x batch | steps | mean PSNR | " + " | ".join(tasks) + " |",
        "|---|---|---|---|---|" + "---|" * len(tasks),
    ]
    for row in rows:
        per_task = " | ".join(f"{row['final_per_task'][t]:.2f}" for t in tasks)
        lines.append(f"| {row['name']} | {row['params']:,} | {row['patch']} x {row['batch']} | {row['steps']} | "
                     f"{row['final_mean_psnr']:.2f} | {per_task} |")
    lines += ["", "Mean PSNR against wall-clock (hours: PSNR):", ""]
    for row in rows:
        curve = ", ".join(f"{p['hours']:.2f} h: {p['mean_psnr']:.2f}" for p in row["curve"])
        lines.append(f"- {row['name']}: {curve}")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
