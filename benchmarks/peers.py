"""The peers side by side: parameters, FLOPs and CPU latency at 256 x 256 of every peer and its ExDA version.

    .venv/bin/python benchmarks/peers.py                       # all that are registered, 3 timed repeats
    .venv/bin/python benchmarks/peers.py --repeats 1 --only histoformer,exda_histoformer

Parameters are ``sum(p.numel() for p in model.parameters())``; FLOPs come from ``exda.models.profile``
(torch's FlopCounter on the meta device, 2 x multiply-adds; sorting, gathering and other data movement
count zero). Latency: one process, fp32 eager, ``torch.inference_mode``, batch 1, random weights, the
median of ``--repeats`` forward passes after ``--warmup`` untimed ones. Models are timed one after the
other, so machine noise is not shared between rows: compare rows of one run, not across machines.
Writes ``benchmarks/results/peers.{json,md}`` (atomically), with the command and the machine.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

import exda
from exda.atomic import write_results
from exda.models.profile import count_parameters, profile_model
from exda.models.restormer import PROMPTS

# Peers in the order of docs/peers.md; each is followed by its ExDA version when one is registered.
PEERS = ("restormer", "promptir", "airnet", "adair", "moce_ir_s", "moce_ir", "histoformer", "amir")


def peer_names(only: str | None) -> list[str]:
    registered = set(exda.list_models())
    names = [n for peer in PEERS for n in (peer, "exda_" + peer) if n in registered]
    if only:
        wanted = only.split(",")
        unknown = [n for n in wanted if n not in registered]
        if unknown:
            sys.exit(f"not registered: {', '.join(unknown)}")
        names = [n for n in names if n in wanted] + [n for n in wanted if n not in names]
    return names


def latency(model: torch.nn.Module, x: torch.Tensor, repeats: int, warmup: int) -> list[float]:
    """Seconds per forward pass, ``repeats`` of them after ``warmup`` untimed ones."""
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            model(x)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return times


def measure(name: str, size: int, repeats: int, warmup: int) -> dict:
    params, flops = profile_model(name, (size, size))
    torch.manual_seed(0)
    model = exda.create_model(name).eval()
    assert count_parameters(model) == params
    x = torch.rand(1, model.in_channels, size, size)
    times = latency(model, x, repeats, warmup)
    row = {"model": name, "in_channels": model.in_channels, "parameters": params, "gflops": flops / 1e9,
           "latency_s_median": statistics.median(times), "latency_s_all": times}
    if name == "promptir":  # ExDA overheads are against the live network, as `exda models` does
        live_params, live_flops = profile_model(name, (size, size), prompts=PROMPTS["base"])
        row.update(live_parameters=live_params, live_gflops=live_flops / 1e9)
    return row


def to_markdown(rows: list[dict], size: int, header: str) -> str:
    by_name = {row["model"]: row for row in rows}
    lines = [header, "", f"| model | channels | parameters | GFLOPs @{size} | CPU latency @{size} (s, median) | "
             "ExDA parameters | ExDA FLOPs | ExDA latency |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        extra = ["", "", ""]
        base = by_name.get(row["model"].removeprefix("exda_")) if row["model"].startswith("exda_") else None
        if base is not None:
            base_params = base.get("live_parameters", base["parameters"])
            base_gflops = base.get("live_gflops", base["gflops"])
            extra = [f"{100 * (row['parameters'] / base_params - 1):+.2f}%",
                     f"{100 * (row['gflops'] / base_gflops - 1):+.2f}%",
                     f"{row['latency_s_median'] / base['latency_s_median']:.2f}x"]
        lines.append(f"| {row['model']} | {row['in_channels']} | {row['parameters']:,} | {row['gflops']:.1f} | "
                     f"{row['latency_s_median']:.2f} | " + " | ".join(extra) + " |")
    if "promptir" in by_name:
        lines.append("\npromptir's count includes 215,296 parameters of six convolutions the original defines but "
                     "never calls; exda_promptir's overheads are against the live network without them.")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--only", help="comma-separated model names (default: every registered peer)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/peers"),
                        help="writes OUT.json and OUT.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = peer_names(args.only)
    rows = []
    for name in names:
        rows.append(measure(name, args.size, args.repeats, args.warmup))
        row = rows[-1]
        print(f"{name}: {row['parameters']:,} params, {row['gflops']:.1f} GFLOPs, "
              f"{row['latency_s_median']:.2f} s", flush=True)
    command = "python benchmarks/peers.py " + " ".join(sys.argv[1:])
    record = {
        "command": command.strip(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                    "torch": torch.__version__, "python": platform.python_version()},
        "protocol": f"batch 1, {args.size}x{args.size}, fp32 eager, inference_mode, random weights, median of "
                    f"{args.repeats} after {args.warmup} warm-up, one process, models timed one after another",
        "rows": rows,
    }
    header = (f"`{record['command']}` ({record['date']}, {args.threads} threads, torch {torch.__version__}; "
              f"{record['protocol']}). ExDA columns: against the backbone in the row named without `exda_`.")
    out = args.out
    markdown = to_markdown(rows, args.size, header)
    write_results(out.with_suffix(".json"), record, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
