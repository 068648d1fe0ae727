"""Inference latency of the Restormer-family networks with this checkout's attention against another checkout's.

    .venv/bin/python benchmarks/attention_speed.py --baseline-code /path/to/checkout/before/the/change
        # -> benchmarks/results/attention_speed.{json,md}

Each path of each checkout runs in a fresh process with that checkout's code on the path: seeded models
(random weights, the same in both checkouts) on one 3 x SIZE x SIZE photo crop, fp32, on the ``eager``
path (the network as built, NCHW) or the ``fast`` one (``optimize_for_inference``: channels-last, bf16
only where the CPU has it); the models' calls alternate, so a slow spell of the machine touches them all;
the first call and the median of the later ones. The table gives this code's speed-up over the baseline
for each model and path, and the ExDA overhead (an ExDA network's latency over its plain backbone's on the
same path) for each code.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from exda.engine.bench import cpu_model_name

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
PAIRS = {"exda_restormer": "restormer", "exda_restormer_tiny": "restormer_tiny"}  # ExDA network: its backbone

CHILD = """
import json, statistics, sys, time
import torch
import exda
from exda.data.samples import load_sample
from exda.inference.fast import optimize_for_inference
path, size, threads, calls, names = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
torch.set_num_threads(threads)
pixels = torch.from_numpy(load_sample("coffee")).permute(2, 0, 1)[None, :, :size, :size].float().contiguous()
nets = {}
for name in names:
    torch.manual_seed(0)
    model = exda.create_model(name).eval()
    nets[name] = optimize_for_inference(model, precision="auto") if path == "fast" else model
times = {name: [] for name in names}
with torch.inference_mode():
    for _ in range(calls):  # round robin: a slow spell of the machine touches every model
        for name, net in nets.items():
            start = time.perf_counter()
            net(pixels)
            times[name].append(time.perf_counter() - start)
print(json.dumps({name: {"first_call_s": t[0], "latency_s": statistics.median(t[1:] or t), "times_s": t}
                  for name, t in times.items()}))
"""


def rows_of(code: Path, models: list[str], path: str, size: int, threads: int, calls: int) -> dict[str, dict]:
    """Each model's latency on one path with one checkout's code, in one fresh process, calls interleaved."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    proc = subprocess.run([sys.executable, "-c", CHILD, path, str(size), str(threads), str(calls), *models],
                          capture_output=True, text=True, env=env, cwd=code)
    if proc.returncode != 0:
        raise SystemExit(f"the {path} rows failed for {code}:\n{proc.stderr}")
    return json.loads(proc.stdout.splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-code", type=Path, required=True, help="a checkout of the code before the change")
    parser.add_argument("--models", nargs="+", default=[m for pair in PAIRS.items() for m in pair],
                        help="registered models (default: exda_restormer(_tiny) and their backbones)")
    parser.add_argument("--paths", nargs="+", choices=("eager", "fast"), default=["eager", "fast"])
    parser.add_argument("--size", type=int, default=256, help="side of the square input (default 256)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--calls", type=int, default=4, help="forward passes per row (the first is reported apart)")
    parser.add_argument("--out", type=Path, default=RESULTS / "attention_speed.json")
    args = parser.parse_args(argv)
    if not (args.baseline_code / "exda" / "__init__.py").is_file():
        parser.error(f"--baseline-code {args.baseline_code}: not an exda checkout")
    codes = {"this": ROOT, "baseline": args.baseline_code.resolve()}
    rows = []
    for path in args.paths:
        for label, code in codes.items():
            for model, measured in rows_of(code, args.models, path, args.size, args.threads, args.calls).items():
                rows.append({"model": model, "path": path, "code": label, **measured})
                print(json.dumps({k: v for k, v in rows[-1].items() if k != "times_s"}), flush=True)
    latency = {(r["model"], r["path"], r["code"]): r["latency_s"] for r in rows}
    for r in rows:
        r["speedup_vs_baseline"] = latency[r["model"], r["path"], "baseline"] / r["latency_s"]
        backbone = PAIRS.get(r["model"])
        plain = latency.get((backbone, r["path"], r["code"]))
        r["exda_overhead"] = r["latency_s"] / plain if plain else None
    result = {"command": "python benchmarks/attention_speed.py " + " ".join(argv or sys.argv[1:]),
              "cpu": cpu_model_name(), "threads": args.threads, "size": args.size, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"`{result['command']}` on {result['cpu']}, {args.threads} threads, 1 x 3 x {args.size} x {args.size}, "
             f"fp32 in and out; median of {args.calls - 1} calls after the first; a fresh process per path and "
             "code, models interleaved.", "",
             "| model | path | code | first call s | latency s | x baseline | ExDA overhead |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        overhead = "" if r["exda_overhead"] is None else f"{r['exda_overhead']:.3f}"
        lines.append(f"| {r['model']} | {r['path']} | {r['code']} | {r['first_call_s']:.3f} | {r['latency_s']:.3f} | "
                     f"{r['speedup_vs_baseline']:.2f} | {overhead} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
