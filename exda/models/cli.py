"""`exda models`: every registered model with its parameters and GFLOPs at 1 x 3 x 256 x 256."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from exda import __version__
from exda.atomic import atomic_write
from exda.errors import UserError
from exda.models.profile import profile_model
from exda.models.registry import list_models
from exda.models.restormer import PROMPTS


def backbone_of(name: str) -> str | None:
    """``exda_promptir_small`` -> ``promptir_small``: the model an ExDA variant adds its primitives to."""
    return name.removeprefix("exda_") if name.startswith("exda_") else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=256, help="square input size for FLOPs (default 256)")
    parser.add_argument("--filter", default="", help="only models whose name contains this text")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT.json",
                        help="also write the table as JSON (benchmarks/results/models.json is made this way; "
                             "the README's figures are tested against it)")


def model_rows(size: int = 256, name_filter: str = "") -> Iterator[dict[str, Any]]:
    """One row per registered model, as each is measured: parameters, FLOPs at 1 x C x size x size and,
    for an ExDA variant, its overhead in % over the backbone (PromptIR: the live network without its
    never-called convs). Each network is profiled once (a backbone's figures serve its ExDA variants)."""
    profiled: dict[tuple[str, bool], tuple[int, int]] = {}

    def profile(name: str, live: bool = False) -> tuple[int, int]:
        if (name, live) not in profiled:
            profiled[name, live] = _live_backbone(name, size) if live else profile_model(name, (size, size))
        return profiled[name, live]

    for name in list_models():
        if name_filter not in name:
            continue
        params, flops = profile(name)
        row: dict[str, Any] = {"model": name, "parameters": params, "flops": flops, "backbone": backbone_of(name)}
        if row["backbone"] is not None:
            base_params, base_flops = profile(row["backbone"], live=row["backbone"] == "promptir")
            row["backbone_parameters"], row["backbone_flops"] = base_params, base_flops
            row["params_overhead_pct"] = 100 * (params / base_params - 1)
            row["flops_overhead_pct"] = 100 * (flops / base_flops - 1)
        yield row


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


def _live_backbone(name: str, size: int) -> tuple[int, int]:
    """Backbone parameters and FLOPs without PromptIR's never-called convolutions."""
    kwargs = {"prompts": PROMPTS["base"]} if name == "promptir" else {}
    return profile_model(name, (size, size), **kwargs)
