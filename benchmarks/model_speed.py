"""Training-step speed and memory of ExDA models against their backbones, measured in the same run.

    .venv/bin/python benchmarks/model_speed.py --pairs restormer_tiny:exda_restormer_tiny --patch 64
    python benchmarks/model_speed.py --device cuda --pairs restormer:exda_restormer --patch 128 --batch 8

Prints a table (median seconds per forward+backward, peak memory, ratio ExDA / backbone) and writes
JSON under benchmarks/results/. Peak memory (CUDA) is of one step with both models'
weights resident. Ratios, not absolute times, are what to compare across machines.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import exda


def one_step(model: torch.nn.Module, x: torch.Tensor, precision: str) -> float:
    autocast = torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    model.zero_grad(set_to_none=True)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with autocast:
        loss = (model(x) - x).abs().mean()
    loss.backward()
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def compare(models: dict[str, torch.nn.Module], x: torch.Tensor, precision: str, iters: int, warmup: int):
    """Median step time of each model, the models interleaved step by step so machine noise hits both."""
    times: dict[str, list[float]] = {role: [] for role in models}
    for i in range(warmup + iters):
        for role, model in models.items():
            t = one_step(model, x, precision)
            if i >= warmup:
                times[role].append(t)
    return {role: statistics.median(ts) for role, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="restormer_tiny:exda_restormer_tiny,promptir_tiny:exda_promptir_tiny")
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/results/model_speed.json")
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, args.patch, args.patch, device=device)
    rows = []
    for pair in args.pairs.split(","):
        backbone, variant = pair.split(":")
        for precision in args.precisions.split(","):
            result = {"backbone": backbone, "variant": variant, "precision": precision}
            models = {role: exda.create_model(name).to(device).to(memory_format=torch.channels_last)
                      for role, name in (("backbone", backbone), ("variant", variant))}
            if device.type == "cuda":
                for role, model in models.items():  # peak memory of one step, each model alone
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                    one_step(model, x, precision)
                    result[f"{role}_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
            for role, seconds in compare(models, x, precision, args.iters, args.warmup).items():
                result[f"{role}_s"] = seconds
            del models
            result["ratio"] = result["variant_s"] / result["backbone_s"]
            rows.append(result)

    print(f"device={device} ({torch.cuda.get_device_name() if device.type == 'cuda' else platform.processor()})"
          f" batch={args.batch} patch={args.patch}")
    print("| backbone | variant | precision | backbone s/step | variant s/step | ratio | peak GiB (b / v) |")
    print("|---|---|---|---:|---:|---:|---|")
    for r in rows:
        mem = f"{r['backbone_peak_gib']:.2f} / {r['variant_peak_gib']:.2f}" if "variant_peak_gib" in r else "-"
        print(f"| {r['backbone']} | {r['variant']} | {r['precision']} | {r['backbone_s']:.4f} | "
              f"{r['variant_s']:.4f} | {r['ratio']:.3f} | {mem} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"device": str(device), "batch": args.batch, "patch": args.patch, "torch": torch.__version__,
            "command": "python " + " ".join(__import__("sys").argv)}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
