"""Miniature all-in-one ablation of the ExDA primitives on this CPU (issue 9, item 2).

The ``restormer_test`` backbone (dim 8, blocks 1/1/1/1) with both primitives off, ``+value transform``,
``+global token``, both, and each other option of each primitive, trained by the project's trainer
(``exda.engine.trainer.train``) with one recipe, the same data and the same seeds, in two settings:

- ``deg3``: noise (sigma 25), rain, haze;
- ``mixed``: CDD-11-style combinations (low, haze, rain, low_haze, haze_rain, low_haze_rain).

Training uses the built-in TRAIN sample photos degraded on the fly; the trainer's last validation
(EMA weights, the HELDOUT photos, fixed degradations per index) gives the per-task PSNR/SSIM/LPIPS; the
``+gt <option>`` rows change one token option at a time from the first reading (``LEGACY_TOKEN``), and
``+gt``/``both`` use the options chosen from them (``CHOSEN_TOKEN``). Each run is
one single-threaded process (oneDNN's 2-thread runs stall when another process takes a core), at most
``--jobs`` (default 2) at once; a run whose ``<setting>/<variant>/seed<k>/result.json`` exists is
skipped, so a crash loses nothing. ``--report`` only collects results into
``benchmarks/results/ablation.{json,md}`` (mean and min-max over seeds, gains paired by seed,
parameters, FLOPs, latency). A run keeps its checkpoints under ``<run>/run`` (git-ignored) for
``exda analyze``.

    .venv/bin/python benchmarks/ablation.py               # train what is missing, then report
    .venv/bin/python benchmarks/ablation.py --report      # tables from what exists
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from statistics import mean

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "ablation"
MODEL = "restormer_test"
LEGACY_TOKEN = dict(token_upsample="nearest", token_softmax="raw", token_column_scale="none", token_input="raw")
# The token options chosen from the "+gt <option>" rows (docs/experiments.md); "+gt" and "both" use them.
CHOSEN_TOKEN = dict(token_upsample="bilinear", token_softmax="standardized", token_column_scale="area",
                    token_input="normalized")
VARIANTS: dict[str, dict[str, str]] = {
    "backbone": dict(value_transform="off", global_token="off"),
    "+vt": dict(value_transform="dwconv_gelu", global_token="off"),
    "+gt": dict(value_transform="off", global_token="row", **CHOSEN_TOKEN),
    "both": dict(value_transform="dwconv_gelu", global_token="row", **CHOSEN_TOKEN),
    # each token option changed alone from the first reading (LEGACY_TOKEN)
    "+gt legacy": dict(value_transform="off", global_token="row", **LEGACY_TOKEN),
    "+gt aligned": dict(value_transform="off", global_token="row", **{**LEGACY_TOKEN, "token_upsample": "aligned"}),
    "+gt bilinear": dict(value_transform="off", global_token="row", **{**LEGACY_TOKEN, "token_upsample": "bilinear"}),
    "+gt standardized": dict(value_transform="off", global_token="row",
                             **{**LEGACY_TOKEN, "token_softmax": "standardized"}),
    "+gt normalized input": dict(value_transform="off", global_token="row",
                                 **{**LEGACY_TOKEN, "token_input": "normalized"}),
    "+gt columns": dict(value_transform="off", global_token="columns", **LEGACY_TOKEN),
    "+gt columns area": dict(value_transform="off", global_token="columns",
                             **{**LEGACY_TOKEN, "token_column_scale": "area"}),
    "+vt gelu": dict(value_transform="gelu", global_token="off"),
    "+vt head_mlp": dict(value_transform="head_mlp", global_token="off"),
}
SETTINGS: dict[str, list[str]] = {
    "deg3": ["noise25", "rain", "haze"],
    "mixed": ["low", "haze", "rain", "low_haze", "haze_rain", "low_haze_rain"],
}
SEEDS = (0, 1, 2)
ITERS = 800
PATCH = 48


def _slug(variant: str) -> str:
    return variant.replace("+", "plus_").replace(" ", "_")


def run_dir(setting: str, variant: str, seed: int) -> Path:
    return OUT / setting / _slug(variant) / f"seed{seed}"


def config_dict(setting: str, variant: str, seed: int) -> dict:
    return {
        "model": {"name": MODEL, "kwargs": dict(VARIANTS[variant])},
        "data": {"layout": "synthetic", "root": None, "degradations": SETTINGS[setting], "patch_size": PATCH,
                 "batch_size": 4, "num_workers": 0, "length": 200, "augment": True, "val_patch_size": 128,
                 "val_max_items": 100},
        "optim": {"lr": 1.0e-3, "weight_decay": 0.0, "betas": [0.9, 0.999], "warmup_iters": 20,
                  "schedule_iters": ITERS, "min_lr": 1.0e-5, "grad_clip": 0.0},
        "loss": {"kind": "l1", "fft_weight": 0.0},
        "train": {"iters": ITERS, "val_every": ITERS, "ckpt_every": ITERS, "log_every": 50,
                  "precision": "fp32", "ema_decay": 0.99, "seed": seed, "device": "cpu", "val_lpips": "alex"},
    }


def atomic_write_text(path: Path, text: str) -> None:
    from exda.atomic import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_text(text))


def train_one(setting: str, variant: str, seed: int) -> None:
    """One training run in this process (single-threaded); writes result.json atomically at the end."""
    import torch

    from exda.engine.config import config_from_dict
    from exda.engine.trainer import train

    torch.set_num_threads(1)
    folder = run_dir(setting, variant, seed)
    train_folder = folder / "run"
    if train_folder.exists():  # an interrupted run: start it again from scratch (runs are short)
        import shutil
        shutil.rmtree(train_folder)
    start = time.perf_counter()
    metrics = train(config_from_dict(config_dict(setting, variant, seed)), train_folder)
    record = {"setting": setting, "variant": variant, "seed": seed, "kwargs": VARIANTS[variant],
              "iters": ITERS, "patch": PATCH, "train_seconds": time.perf_counter() - start,
              "per_task": metrics["per_task"], "mean_psnr": metrics["mean_psnr"]}
    atomic_write_text(folder / "result.json", json.dumps(record, indent=1))


def profile_variants() -> dict[str, dict[str, float]]:
    """Parameters, FLOPs at 256x256 and single-thread CPU latency at 128x128 of each variant."""
    import torch

    from exda.models.profile import profile_model
    from exda.models.registry import create_model

    torch.set_num_threads(1)
    table = {}
    x = torch.rand(1, 3, 128, 128)
    for variant, kwargs in VARIANTS.items():
        params, flops = profile_model(MODEL, (256, 256), **kwargs)
        model = create_model(MODEL, **kwargs).eval()
        with torch.inference_mode():
            model(x)
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - t0)
        table[variant] = {"params": params, "gflops_256": flops / 1e9, "latency_ms_128": 1e3 * sorted(times)[2]}
    return table


def _load(setting: str, variant: str) -> dict[int, dict]:
    """The finished runs of one variant, by seed."""
    found = {}
    for seed in SEEDS:
        path = run_dir(setting, variant, seed) / "result.json"
        if path.exists():
            found[seed] = json.loads(path.read_text())
    return found


def report() -> dict:
    """Tables from the finished runs: per task PSNR [min, max] / SSIM / LPIPS over seeds, the mean PSNR,
    its gain over the backbone, the gain paired by seed (same seed = same initial weights for the shared
    layers and the same batches), and on how many tasks the variant's mean beats the backbone's."""
    profile = profile_variants()
    base_params = profile["backbone"]["params"]
    record: dict = {"model": MODEL, "iters": ITERS, "patch": PATCH, "seeds": list(SEEDS), "settings": SETTINGS,
                    "variants": VARIANTS, "profile": profile, "results": {}}
    lines = [f"# Ablation (benchmarks/ablation.py): {MODEL}, {ITERS} steps, patch {PATCH}, batch 4, "
             f"seeds {list(SEEDS)}, HELDOUT sample photos", "",
             "Per task: PSNR (dB) mean over seeds [min, max] / SSIM / LPIPS (AlexNet, lower is better). gain: mean "
             "PSNR minus the backbone's; paired: per seed, the variant's mean PSNR minus the backbone's with the "
             "same seed, mean [min, max]; won: tasks where the variant's mean PSNR beats the backbone's.", ""]
    for setting, tasks in SETTINGS.items():
        lines += [f"## {setting}", "",
                  "| variant | params (+%) | GFLOPs@256 | ms@128 | " + " | ".join(tasks)
                  + " | mean PSNR | gain | paired gain | won |",
                  "|---|---|---|---|" + "---|" * len(tasks) + "---|---|---|---|"]
        base = _load(setting, "backbone")
        for variant in VARIANTS:
            runs = _load(setting, variant)
            if not runs:
                continue
            row: dict = {}
            cells, won = [], 0
            for task in tasks:
                values = {key: [r["per_task"][task][key] for r in runs.values() if key in r["per_task"][task]]
                          for key in ("psnr", "ssim", "lpips")}
                row[task] = values
                lp = f" / {mean(values['lpips']):.3f}" if values["lpips"] else ""
                cells.append(f"{mean(values['psnr']):.2f} [{min(values['psnr']):.2f}, {max(values['psnr']):.2f}]"
                             f" / {mean(values['ssim']):.3f}{lp}")
                if base and mean(values["psnr"]) > mean(r["per_task"][task]["psnr"] for r in base.values()):
                    won += 1
            means = [r["mean_psnr"] for r in runs.values()]
            paired = [runs[k]["mean_psnr"] - base[k]["mean_psnr"] for k in runs if k in base]
            row.update(mean_psnr=means, seeds_done=list(runs), paired_gain=paired, tasks_won=won)
            gain = mean(means) - mean(r["mean_psnr"] for r in base.values()) if base else float("nan")
            row["gain"] = gain
            p = profile[variant]
            lines.append(f"| {variant} | {p['params']:,} ({100 * (p['params'] / base_params - 1):+.2f}%) | "
                         f"{p['gflops_256']:.3f} | {p['latency_ms_128']:.1f} | " + " | ".join(cells)
                         + f" | {mean(means):.2f} [{min(means):.2f}, {max(means):.2f}] | {gain:+.2f} | "
                         + (f"{mean(paired):+.2f} [{min(paired):+.2f}, {max(paired):+.2f}]" if paired else "-")
                         + f" | {won}/{len(tasks)} |")
            record["results"].setdefault(setting, {})[variant] = row
        lines.append("")
    atomic_write_text(ROOT / "benchmarks" / "results" / "ablation.json", json.dumps(record, indent=1))
    atomic_write_text(ROOT / "benchmarks" / "results" / "ablation.md", "\n".join(lines))
    print("\n".join(lines))
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--report", action="store_true", help="only collect existing results into tables")
    parser.add_argument("--jobs", type=int, default=2, help="training processes at once (default 2)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                        help="train only these variants, in this order (default: all)")
    parser.add_argument("--one", nargs=3, metavar=("SETTING", "VARIANT", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        train_one(args.one[0], args.one[1], int(args.one[2]))
        return
    if not args.report:
        # seed by seed, so that a run cut short still leaves every variant with its first seeds
        todo = [(s, v, k) for k in SEEDS for v in args.variants for s in SETTINGS
                if not (run_dir(s, v, k) / "result.json").exists()]
        running: list[tuple[subprocess.Popen, tuple]] = []
        while todo or running:
            while todo and len(running) < args.jobs:
                job = todo.pop(0)
                folder = run_dir(*job)
                folder.mkdir(parents=True, exist_ok=True)
                log = open(folder / "stdout.log", "w")
                proc = subprocess.Popen([sys.executable, __file__, "--one", job[0], job[1], str(job[2])],
                                        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
                running.append((proc, job))
                print(f"{time.strftime('%H:%M:%S')} started {job}", flush=True)
            time.sleep(2)
            for proc, job in list(running):
                if proc.poll() is not None:
                    running.remove((proc, job))
                    print(f"{time.strftime('%H:%M:%S')} finished {job} rc={proc.returncode}", flush=True)
    report()


if __name__ == "__main__":
    main()
