"""`exda models`: every registered model with its parameters and GFLOPs at 1 x 3 x 256 x 256."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from exda import __version__
from exda.atomic import atomic_write
from exda.errors import UserError
from exda.models.profile import model_rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=256, help="square input size for FLOPs (default 256)")
    parser.add_argument("--filter", default="", help="only models whose name contains this text")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT.json",
                        help="also write the table as JSON (benchmarks/results/models.json is made this way; "
                             "the README's figures are tested against it)")


def run(args: argparse.Namespace) -> int:
    if args.size < 8:
        raise UserError(f"--size must be at least 8 px, got {args.size}")
    print(f"| model | parameters | GFLOPs @{args.size} | ExDA params overhead | ExDA FLOPs overhead |")
    print("|---|---:|---:|---:|---:|", flush=True)
    rows = []
    for row in model_rows(args.size, args.filter):  # printed as measured: FLOP counting takes ~1 s a model
        overhead = ("", "")
        if row["backbone"] is not None:
            overhead = (f"{row['params_overhead_pct']:+.2f}%", f"{row['flops_overhead_pct']:+.2f}%")
        print(f"| {row['model']} | {row['parameters']:,} | {row['flops'] / 1e9:.1f} | {overhead[0]} | {overhead[1]} |",
              flush=True)
        rows.append(row)
    if any(row["model"] == "promptir" for row in rows):
        print("\npromptir's count includes 215,296 parameters of six convolutions the original PromptIR "
              "defines but never calls; ExDA overheads are against the live network without them.")
    if args.json is not None:
        record = {"command": f"exda models --size {args.size}" + (f" --filter {args.filter}" if args.filter else ""),
                  "size": args.size, "exda_version": __version__, "torch": torch.__version__, "rows": rows}
        text = json.dumps(record, indent=1) + "\n"
        atomic_write(args.json, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        print(f"wrote {args.json}")
    return 0
