"""The default models against the degraded input and the best classical method, per degradation, with the goals.

Photo model: the held-out sample photos (coffee, flower, grace_hopper; never trained on) at full size,
every demo degradation at a fixed seed. Medical model: the held-out CT slice under each medical
degradation. Classical candidates per degradation: exda/baselines.py (BM3D when installed).

    .venv/bin/python benchmarks/default_model.py            # -> benchmarks/results/default_model.{json,md}
    .venv/bin/python benchmarks/default_model.py --photo-checkpoint ~/exda-runs/default_photo \\
        --skip-medical --out /tmp/candidate.json            # a candidate, before it ships

Each model's rows are checked against the default model's goals (GOALS below; clean photos at large are
benchmarks/clean_photos.py's). Grids are written beside ``--out`` (``<stem>_grid.jpg``,
``<stem>_medical_grid.jpg``).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np

from exda.baselines import bm3d, method_available, tv
from exda.data.samples import load_sample, sample_names
from exda.engine.bench import run_benchmark
from exda.engine.demo import DEMO_DEGRADATIONS, DEMO_SEED, Row, compare, save_grid, to_markdown
from exda.inference.fast import optimize_for_inference
from exda.inference.loader import load_network
from exda.inference.pretrained import default_checkpoint

MEDICAL_DEGRADATIONS = ("clean", "mri", "mri_undersample", "ct", "pet")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# The goals (docs/model_card.md), each a margin in dB that must be >= 0.
GAIN_DB = 1.0  # over the degraded input, and over the best classical method where it applies
CLEAN_DB = 35.0  # a clean photo against itself
BEAT_CLASSICAL = ("rain", "haze", "snow", "low_light", "underwater", "random_mix")
BM3D_TASK, BM3D_SIGMA, BM3D_SLACK_DB = "noise25", 25 / 255, 1.0  # within 1 dB of BM3D told the true sigma
BM3D_TRUE = "bm3d (true sigma)"


def photo_references() -> dict[str, dict]:
    """The named methods the photo goals compare with: BM3D given the true sigma, where it is installed."""
    return {BM3D_TASK: {BM3D_TRUE: partial(bm3d, sigma=BM3D_SIGMA)}} if method_available("bm3d") else {}


def medical_references() -> dict[str, dict]:
    """TV on every medical degradation (the medical goal: beat it)."""
    return {name: {"tv": tv} for name in MEDICAL_DEGRADATIONS if name != "clean"}


def _goal(degradation: str, goal: str, margin: float | None) -> dict:
    return {"degradation": degradation, "goal": goal, "margin_db": None if margin is None else round(margin, 3),
            "met": None if margin is None else margin >= 0}


def photo_goals(rows: list[Row]) -> list[dict]:
    """One entry per goal and degradation: the margin in dB (>= 0: met; None: not measurable here)."""
    goals = []
    for r in rows:
        if r.degradation == "clean":
            goals.append(_goal(r.degradation, f"clean photo >= {CLEAN_DB:g} dB", r.restored_psnr - CLEAN_DB))
            continue
        goals.append(_goal(r.degradation, f">= input + {GAIN_DB:g} dB", r.restored_psnr - r.input_psnr - GAIN_DB))
        if r.degradation in BEAT_CLASSICAL:
            goals.append(_goal(r.degradation, f">= best classical + {GAIN_DB:g} dB",
                               r.restored_psnr - r.baseline_psnr - GAIN_DB))
        if r.degradation == BM3D_TASK:
            ref = r.references.get(BM3D_TRUE)
            goals.append(_goal(r.degradation, f">= {BM3D_TRUE} - {BM3D_SLACK_DB:g} dB",
                               None if ref is None else r.restored_psnr - ref + BM3D_SLACK_DB))
    return goals


def medical_goals(rows: list[Row]) -> list[dict]:
    """Every medical degradation: >= input + 1 dB, and above TV."""
    goals = []
    for r in rows:
        if r.degradation != "clean":
            goals.append(_goal(r.degradation, f">= input + {GAIN_DB:g} dB", r.restored_psnr - r.input_psnr - GAIN_DB))
            goals.append(_goal(r.degradation, "> tv", r.restored_psnr - r.references["tv"]))
    return goals


def goals_markdown(goals: list[dict]) -> str:
    """The goals table, and how many are met."""
    lines = ["| degradation | goal | margin | met |", "|---|---|---|---|"]
    for g in goals:
        margin = "not measured" if g["margin_db"] is None else f"{g['margin_db']:+.2f} dB"
        met = {True: "yes", False: "no", None: "-"}[g["met"]]
        lines.append(f"| {g['degradation']} | {g['goal']} | {margin} | {met} |")
    measured = [g for g in goals if g["met"] is not None]
    lines.append(f"\n{sum(g['met'] for g in measured)} of {len(measured)} measured goals met"
                 + (f" ({len(goals) - len(measured)} not measured)" if len(goals) > len(measured) else "") + ".")
    return "\n".join(lines)


def section(checkpoint: Path, photos: dict[str, np.ndarray], degradations: tuple[str, ...], grid: Path,
            references: dict[str, dict], goals) -> dict:
    net, info = load_network(checkpoint)
    model = optimize_for_inference(net)
    start = time.perf_counter()
    rows, grid_rows = compare(model, photos, degradations, seed=DEMO_SEED, references=references)
    save_grid(grid, grid_rows, [r.baseline for r in rows])
    checked = goals(rows)
    return {
        "checkpoint": str(checkpoint), "model": info.arch, "kwargs": info.kwargs, "step": info.step,
        "parameters": sum(p.numel() for p in net.parameters()), "photos": list(photos),
        "sizes": {name: list(img.shape) for name, img in photos.items()},
        "seconds": round(time.perf_counter() - start, 1), "rows": [asdict(r) for r in rows],
        "table": to_markdown(rows), "goals": checked, "goals_table": goals_markdown(checked),
        "grid": str(grid.relative_to(ROOT)) if grid.is_relative_to(ROOT) else str(grid),
    }


def results_markdown(record: dict) -> str:
    """Each model's table and its goals."""
    return "\n\n".join(f"## {k} model (step {record[k]['step']})\n\n{record[k]['table']}\n\n### Goals\n\n"
                       f"{record[k]['goals_table']}" for k in ("photo", "medical") if k in record)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "default_model.json")
    parser.add_argument("--photo-checkpoint", type=Path, default=None,
                        help="a run folder or checkpoint to measure instead of the shipped photo model")
    parser.add_argument("--medical-checkpoint", type=Path, default=None,
                        help="a run folder or checkpoint to measure instead of the shipped medical model")
    parser.add_argument("--skip-medical", action="store_true")
    args = parser.parse_args(argv)
    out = args.out.expanduser().resolve()

    def measure() -> dict:
        record: dict = {"date": time.strftime("%Y-%m-%d"), "seed": DEMO_SEED, "bm3d": method_available("bm3d")}
        photos = {name: load_sample(name) for name in sample_names("heldout", "natural")}
        record["photo"] = section(args.photo_checkpoint or default_checkpoint("photo"), photos, DEMO_DEGRADATIONS,
                                  out.with_name(f"{out.stem}_grid.jpg"), photo_references(), photo_goals)
        if not args.skip_medical:
            slices = {name: load_sample(name) for name in sample_names("heldout", "medical")}
            record["medical"] = section(args.medical_checkpoint or default_checkpoint("medical"), slices,
                                        MEDICAL_DEGRADATIONS, out.with_name(f"{out.stem}_medical_grid.jpg"),
                                        medical_references(), medical_goals)
        return record

    return run_benchmark("default_model", argv, out, measure, results_markdown)


if __name__ == "__main__":
    sys.exit(main())
