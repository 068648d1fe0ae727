"""Training throughput of the default photo recipe on this CPU: steps/hour, idle and under a concurrent load.

    python benchmarks/train_speed.py                      # every setting, ~75 s of timed steps each
    python benchmarks/train_speed.py --only baseline t1   # some settings
    python benchmarks/train_speed.py --seconds 120 --data ~/.cache/exda/photo-pool-v2/train

Each setting runs the real ``exda train --config default_photo`` in a fresh process (validation and
checkpoints off) and reads the per-window ``s/step`` and data-wait share that the trainer logs; the first
``--warmup`` steps are not timed (a compiled run logs its compile time instead; inductor's on-disk cache makes
the second compiled setting compile faster than the first). A setting's *load* is what
shares the machine while it is timed:

- ``idle``: nothing else (the script records the load average, so a busy machine shows);
- ``spin``: one other process keeps one core busy (a pure-Python loop), the situation that made oneDNN's two
  threads wait for each other (~10x slower);
- ``pair``: two identical training runs side by side; their steps/hour are reported each and summed.

The baseline is the recipe as it was before this benchmark (torch's default threads, one data-loader worker,
eager); every ratio is against the baseline measured in the same run. The other settings change one thing
each from ``T1`` (one thread, data in the main process, eager); the chosen recipe is ``t1_compile``. Results:
``benchmarks/results/train_speed.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from exda.engine.config import load_config
from exda.engine.trainer import training_precision

RESULTS = Path(__file__).resolve().parent / "results"
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default_photo.yaml"
WINDOW = 2  # steps per logged window
LINE = re.compile(r"step (\d+) loss \S+ lr \S+ epoch \d+ ([\d.]+) s/step data ([\d.]+)%")
COMPILE = re.compile(r"torch.compile: first step took ([\d.]+) s")


@dataclass(frozen=True)
class Setting:
    name: str
    what: str
    overrides: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    load: str = "idle"  # idle | spin | pair


# The recipe as it was: torch's default threads (one per core), one data worker, eager.
TODAY = ("data.num_workers=1", "train.threads=0", "train.compile=false")
T1 = ("train.threads=1", "data.num_workers=0", "train.compile=false")
SETTINGS = [
    Setting("baseline", "today's recipe: 2 threads, 1 data worker", TODAY),
    Setting("baseline_spin", "today's recipe, one core busy", TODAY, load="spin"),
    Setting("t2_w0", "2 threads, data in the main process", (*T1, "train.threads=2")),
    Setting("t2_passive_spin", "2 threads, OMP_WAIT_POLICY=PASSIVE, one core busy",
            (*T1, "train.threads=2"), {"OMP_WAIT_POLICY": "PASSIVE"}, "spin"),
    Setting("t1_w1", "1 thread, 1 data worker", (*T1, "data.num_workers=1")),
    Setting("t1", "1 thread, data in the main process", T1),
    Setting("t1_spin", "1 thread, one core busy", T1, load="spin"),
    Setting("t1_pair", "two 1-thread runs side by side", T1, load="pair"),
    Setting("t1_fp32", "1 thread, fp32 instead of bf16", (*T1, "train.precision=fp32")),
    Setting("t1_nchw", "1 thread, channels-first instead of channels-last", (*T1, "train.channels_last=false")),
    Setting("t1_fused", "1 thread, fused AdamW", (*T1, "optim.fused=true")),
    Setting("t1_compile", "1 thread, torch.compile", (*T1, "train.compile=true")),
    Setting("t1_compile_spin", "1 thread, torch.compile, one core busy", (*T1, "train.compile=true"), load="spin"),
    Setting("t1_compile_pair", "two compiled 1-thread runs side by side", (*T1, "train.compile=true"), load="pair"),
]


def recipe() -> str:
    """The recipe the settings start from, as configs/default_photo.yaml says today (precision resolved here)."""
    config = load_config(CONFIG)
    layout = "channels-last" if config.train.channels_last else "channels-first"
    precision = training_precision(config.train.precision, torch.device("cpu"))
    return (f"configs/default_photo.yaml ({config.model.name}, patch {config.data.patch_size}, "
            f"batch {config.data.batch_size}, {precision}, {layout})")


def spin() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def start_run(setting: Setting, data: Path, out: Path) -> subprocess.Popen:
    overrides = [
        f"data.root={data}", "train.iters=1000000", "optim.schedule_iters=1000000", "train.val_every=0",
        "train.ckpt_every=0", f"train.log_every={WINDOW}", "data.val_max_items=0", *setting.overrides,
    ]
    command = [sys.executable, "-m", "exda", "train", "--config", "default_photo", "--out", str(out)]
    for override in overrides:
        command += ["--set", override]
    env = {**os.environ, **setting.env}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def read_windows(log: Path) -> tuple[list[tuple[int, float, float]], float | None]:
    text = log.read_text() if log.exists() else ""
    windows = [(int(m[1]), float(m[2]), float(m[3])) for m in LINE.finditer(text)]
    compiled = COMPILE.search(text)
    return windows, float(compiled[1]) if compiled else None


def timed(windows: list[tuple[int, float, float]], warmup: int) -> list[tuple[int, float, float]]:
    return [w for w in windows if w[0] > warmup + WINDOW]


def measure(setting: Setting, data: Path, seconds: float, warmup: int, work: Path) -> dict:
    """Run one setting until ``seconds`` of timed steps were logged by every run of it."""
    outs = [work / f"{setting.name}-{i}" for i in range(2 if setting.load == "pair" else 1)]
    runs = [start_run(setting, data, out) for out in outs]
    load = spin() if setting.load == "spin" else None
    started, load_avg = time.time(), []
    try:
        while True:
            time.sleep(5)
            load_avg.append(os.getloadavg()[0])
            for run in runs:
                if run.poll() is not None:
                    raise SystemExit(f"{setting.name}: training exited with {run.returncode}: "
                                     f"{run.stderr.read().strip().splitlines()[-1:]}")
            logs = [read_windows(out / "train.log") for out in outs]
            spans = [sum(w[1] * WINDOW for w in timed(windows, warmup)) for windows, _ in logs]
            if min(spans) >= seconds or time.time() - started > 20 * seconds + 900:
                break
    finally:
        for proc in [*runs, load]:
            if proc is not None:
                proc.kill()
                proc.wait()
    per_run = []
    for windows, compiled in logs:
        kept = timed(windows, warmup)
        step_seconds = sum(w[1] for w in kept) / max(1, len(kept))
        per_run.append({
            "seconds_per_step": step_seconds, "steps_per_hour": 3600 / step_seconds if kept else 0.0,
            "data_share": sum(w[2] for w in kept) / max(1, len(kept)) / 100,
            "timed_steps": len(kept) * WINDOW, "compile_seconds": compiled,
        })
    return {
        **asdict(setting), "runs": per_run,
        "steps_per_hour": sum(r["steps_per_hour"] for r in per_run),
        "mean_load_average": sum(load_avg) / max(1, len(load_avg)),
    }


def default_data(work: Path) -> Path:
    pool = Path("~/.cache/exda/photo-pool-v2/train").expanduser()
    if pool.is_dir():
        return pool
    from exda.data.samples import export_samples

    folder = work / "photos"
    folder.mkdir()
    export_samples(folder, "train")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="settings to run (default: all; baseline first)")
    parser.add_argument("--seconds", type=float, default=75.0, help="timed seconds per setting (per run)")
    parser.add_argument("--warmup", type=int, default=4, help="untimed steps at the start of each run")
    parser.add_argument("--data", type=Path, default=None, help="folder of clean photos (default: the pool)")
    parser.add_argument("--out", type=Path, default=RESULTS / "train_speed.json")
    args = parser.parse_args()
    names = {s.name for s in SETTINGS}
    if args.only and (unknown := set(args.only) - names):
        sys.exit(f"unknown setting(s) {sorted(unknown)}; known: {', '.join(s.name for s in SETTINGS)}")
    chosen = [s for s in SETTINGS if not args.only or s.name in args.only or s.name == "baseline"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="exda-train-speed-") as tmp:
        work = Path(tmp)
        data = (args.data.expanduser() if args.data else default_data(work))
        for setting in chosen:
            row = measure(setting, data, args.seconds, args.warmup, work)
            rows.append(row)
            per_step = ", ".join(f"{r['seconds_per_step']:.2f} s/step" for r in row["runs"])
            print(f"{setting.name:18s} {row['steps_per_hour']:8.0f} steps/h  ({per_step}, "
                  f"data {row['runs'][0]['data_share']:.0%}, load avg {row['mean_load_average']:.1f})", flush=True)
    base = next(r for r in rows if r["name"] == "baseline")["steps_per_hour"]
    for row in rows:
        row["vs_baseline"] = row["steps_per_hour"] / base
    result = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs",
        "recipe": recipe(),
        "data": str(data), "seconds_per_setting": args.seconds, "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Training throughput (`{result['command']}`)", "",
        f"{result['date']}, torch {result['torch']}, {result['machine']}; {result['recipe']}; "
        f"data {data}. Load: idle = nothing else, spin = one core kept busy by another process, "
        "pair = two identical runs side by side (steps/h summed).", "",
        "| setting | what | load | s/step | steps/h | vs baseline | data share | load avg | compile s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        runs = row["runs"]
        compile_s = "" if runs[0]["compile_seconds"] is None else f"{runs[0]['compile_seconds']:.0f}"
        per_step = " + ".join(f"{r['seconds_per_step']:.2f}" for r in runs)
        lines.append(
            f"| {row['name']} | {row['what']} | {row['load']} | {per_step} | {row['steps_per_hour']:.0f} | "
            f"{row['vs_baseline']:.2f}x | {runs[0]['data_share']:.0%} | {row['mean_load_average']:.1f} | "
            f"{compile_s} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
