"""The paper's claim at the scale of the long run: ExDA against its plain twin, a second seed, each primitive alone.

    python benchmarks/scale_ablation.py                 # -> benchmarks/results/scale_ablation.{json,md}
    python benchmarks/scale_ablation.py --latency       # also time both networks (stop the training first)

Every run of the long run (docs/training.md: `scripts/long_run.sh`) keeps its EMA weights at steps 3,000 and
10,000 (``step_<N>.safetensors`` in ``training/<run>/`` or in the run folder). Each kept checkpoint restores
the 9 whole held-out photos (downscaled to at most 512 px, ``--max-side``: a pass at the pool's 1024 px
takes about 25 minutes of a core here) under all 12 training tasks (degradations drawn with seed 0, the same
for every run; bf16 as the shipped model runs where the CPU computes bf16, else fp32; each evaluation records
which): PSNR, SSIM and LPIPS (alex) per task. The tables pair each
network with the plain twin at the same step and seed, and set the gain beside the seed spread: how far
seed 0 and seed 1 of the same network lie apart at that step. Parameters and FLOPs come from the
checkpoints' networks; ``--latency`` times a 256 x 256 forward pass of each (median of 5, one thread).
Checkpoints already evaluated (same file digest, size and precision) are taken from the existing JSON, not
run again.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from exda.atomic import write_results
from exda.data.io import load_photos, save_image
from exda.data.layouts import build_dataset
from exda.engine.evaluate import evaluate_model, finite_or_none
from exda.inference.checkpoint_format import file_digest
from exda.inference.fast import native_bf16
from exda.inference.loader import load_network
from exda.models.profile import profile_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TASKS = ("clean", "noise15", "noise25", "noise50", "rain", "haze", "motion_blur", "low_light", "snow",
         "underwater", "jpeg", "random_mix")
RUNS = {  # run -> (network, seed), as scripts/long_run.sh trains them
    "default_photo": ("exda", 0),
    "default_photo_plain": ("plain", 0),
    "default_photo_seed1": ("exda", 1),
    "default_photo_plain_seed1": ("plain", 1),
    "default_photo_value_only": ("value_only", 0),
    "default_photo_token_only": ("token_only", 0),
}
SEED_PAIRS = (("default_photo", "default_photo_seed1"), ("default_photo_plain", "default_photo_plain_seed1"))
NETWORKS = {"exda": "ExDA (both primitives)", "plain": "plain twin (both off)",
            "value_only": "+ value transform only", "token_only": "+ global token only"}
METRICS = ("psnr", "ssim", "lpips")


def kept_checkpoints(training: Path, runs: Path) -> dict[tuple[str, int], Path]:
    """(run, step) -> the kept checkpoint; the committed copy in training/ first, else the run folder."""
    found: dict[tuple[str, int], Path] = {}
    for run in RUNS:
        for folder in (training / run, runs / run / "checkpoints"):
            for path in folder.glob("step_*.safetensors"):
                if path.with_suffix(".json").is_file():  # complete
                    found.setdefault((run, int(path.stem.split("_")[1])), path)
    return found


def heldout_photos(pool: Path, max_side: int, dest: Path) -> Path:
    """The held-out photos, each downscaled (Lanczos) so its longer side is at most ``max_side`` px."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, pixels in load_photos(pool / "heldout", max_side).items():
        save_image(dest / f"{name}.png", pixels)
    return dest


def evaluate(path: Path, sha256: str, photos: Path, precision: str) -> dict:
    net, info = load_network(path)
    dataset = build_dataset("synthetic", photos, "val", degradations=TASKS, patch_size=None, seed=0)
    start = time.perf_counter()
    result = evaluate_model(net, dataset, bf16=precision == "bf16", lpips_net="alex")
    per_task = {task: {k: result.per_task[task][k] for k in ("input_psnr", *METRICS)} for task in TASKS}
    return {"checkpoint": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
            "sha256": sha256, "step": info.step, "model_name": info.arch,
            "model_kwargs": info.kwargs,
            "images": len(dataset), "seconds": round(time.perf_counter() - start, 1), "per_task": per_task}


def paired(rows: dict[str, dict], a: str, b: str) -> dict:
    """``a`` - ``b`` per task (PSNR, SSIM, LPIPS; for LPIPS lower is better) and the tasks ``a`` wins in PSNR."""
    gain = {t: {m: rows[a]["per_task"][t][m] - rows[b]["per_task"][t][m] for m in METRICS} for t in TASKS}
    return {"a": a, "b": b, "per_task": gain,
            "mean": {m: statistics.fmean(g[m] for g in gain.values()) for m in METRICS},
            "psnr_wins": sum(g["psnr"] > 0 for g in gain.values()), "tasks": len(TASKS)}


def latency(name: str, kwargs: dict, size: int = 256, repeats: int = 5) -> dict:
    from exda.inference.fast import optimize_for_inference
    from exda.models import create_model

    torch.manual_seed(0)
    net = create_model(name, **kwargs).eval()
    x = torch.rand(1, 3, size, size)
    row = {}
    for precision in ("fp32", "bf16"):
        model = optimize_for_inference(net, precision=precision)
        with torch.inference_mode():
            model(x)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - start)
        row[f"{precision}_s"] = round(statistics.median(times), 3)
    return row


def to_markdown(result: dict) -> str:
    lines = ["# The paper's claim at the long run's scale (`python benchmarks/scale_ablation.py`)", "",
             f"Whole held-out photos (9 photos, longer side <= {result['max_side']} px, x 12 tasks, degradations "
             "seeded 0), EMA weights; each run's precision in its row.", ""]
    lines += ["| network | parameters | GFLOPs at 256^2 | latency fp32 / bf16 (s, 256^2, 1 thread) |",
              "|---|---|---|---|"]
    for network, cost in result["cost"].items():
        lat = cost.get("latency")
        cell = f"{lat['fp32_s']:.3f} / {lat['bf16_s']:.3f}" if lat else "not measured"
        lines.append(f"| {NETWORKS[network]} | {cost['parameters']:,} | {cost['flops'] / 1e9:.2f} | {cell} |")
    for step, block in sorted(result["steps"].items(), key=lambda kv: int(kv[0])):
        lines += ["", f"## Step {step}", "", "| run | " + " | ".join(TASKS) + " | mean |",
                  "|---|" + "---|" * (len(TASKS) + 1)]
        for run, row in block["runs"].items():
            psnr = [row["per_task"][t]["psnr"] for t in TASKS]
            lines.append(f"| {run} ({row['precision']}) | " + " | ".join(f"{v:.2f}" for v in psnr)
                         + f" | {statistics.fmean(psnr):.2f} |")
        for pair in block["pairs"]:
            gains = [pair["per_task"][t]["psnr"] for t in TASKS]
            lines.append(f"| {pair['a']} - {pair['b']} | " + " | ".join(f"{g:+.2f}" for g in gains)
                         + f" | {pair['mean']['psnr']:+.2f} |")
        lines.append("")
        for pair in block["pairs"]:
            m = pair["mean"]
            lines.append(f"- {pair['a']} - {pair['b']}: PSNR {m['psnr']:+.3f} dB (wins {pair['psnr_wins']}/"
                         f"{pair['tasks']} tasks), SSIM {m['ssim']:+.4f}, LPIPS {m['lpips']:+.4f} (lower is better)")
        if len(block["precisions"]) > 1:
            lines.append(f"- the rows of this step were evaluated in {' and '.join(block['precisions'])}: the gains "
                         "mix a precision change into the networks' difference; rerun on one machine")
        if block.get("seed_spread") is not None:
            lines.append(f"- seed spread (mean over tasks of |seed 0 - seed 1| PSNR, both networks): "
                         f"{block['seed_spread']:.3f} dB")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--training", type=Path, default=ROOT / "training")
    parser.add_argument("--runs", type=Path, default=Path.home() / "exda-runs")
    parser.add_argument("--pool", type=Path, default=Path.home() / ".cache" / "exda" / "photo-pool-v2")
    parser.add_argument("--latency", action="store_true", help="time both networks (needs a quiet machine)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-side", type=int, default=512,
                        help="downscale each whole held-out photo to this longer side (the pool's: 1024)")
    parser.add_argument("--out", type=Path, default=RESULTS / "scale_ablation.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    old = json.loads(args.out.read_text()) if args.out.is_file() else {}
    precision = "bf16" if native_bf16(torch.device("cpu")) else "fp32"
    done = {(e["run"], e["step"], e["sha256"], e["max_side"], e["precision"]): e for e in old.get("evaluations", [])}
    evaluations = []
    with tempfile.TemporaryDirectory() as tmp:
        photos = heldout_photos(args.pool, args.max_side, Path(tmp))
        for (run, step), path in sorted(kept_checkpoints(args.training, args.runs).items()):
            sha256 = file_digest(path)["sha256"]
            entry = done.get((run, step, sha256, args.max_side, precision))
            if entry is None:
                print(f"evaluating {run} at step {step} ({path})", flush=True)
                entry = {"run": run, "network": RUNS[run][0], "seed": RUNS[run][1], "max_side": args.max_side,
                         "precision": precision, **evaluate(path, sha256, photos, precision)}
                entry["step"] = step
            evaluations.append(entry)
    if not evaluations:
        print("no kept checkpoints (step_<N>.safetensors) yet", file=sys.stderr)
        return 1
    steps: dict[str, dict] = {}
    for step in sorted({e["step"] for e in evaluations}):
        rows = {run: e for run in RUNS for e in evaluations if e["step"] == step and e["run"] == run}
        pairs = [paired(rows, run, plain) for run, (net, seed) in RUNS.items() if run in rows and net != "plain"
                 for plain, (pnet, pseed) in RUNS.items() if pnet == "plain" and pseed == seed and plain in rows]
        spreads = [abs(rows[a]["per_task"][t]["psnr"] - rows[b]["per_task"][t]["psnr"])
                   for a, b in SEED_PAIRS if a in rows and b in rows for t in TASKS]
        steps[str(step)] = {"runs": rows, "pairs": pairs, "seed_spread": statistics.fmean(spreads) if spreads else None,
                            "precisions": sorted({row["precision"] for row in rows.values()})}
    cost = {}
    for e in evaluations:
        network = e["network"]
        if network not in cost:
            name = e["model_name"]
            params, flops = profile_model(name, (256, 256), **e["model_kwargs"])
            cost[network] = {"model": name, "kwargs": e["model_kwargs"], "parameters": params, "flops": flops,
                             "latency": old.get("cost", {}).get(network, {}).get("latency")}
            if args.latency:
                cost[network]["latency"] = latency(name, e["model_kwargs"])
    result = {"command": "python benchmarks/scale_ablation.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d"), "max_side": args.max_side, "tasks": list(TASKS), "cost": cost,
              "steps": steps, "evaluations": evaluations}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = to_markdown(result)
    write_results(args.out, finite_or_none(result), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
