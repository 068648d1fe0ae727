"""`exda models`: every registered model with its parameters and GFLOPs at 1 x 3 x 256 x 256."""

from __future__ import annotations

import argparse

from exda.errors import UserError
from exda.models.profile import profile_model
from exda.models.promptir import PROMPTS
from exda.models.registry import list_models


def backbone_of(name: str) -> str | None:
    """``exda_promptir_small`` -> ``promptir_small``: the model an ExDA variant adds its primitives to."""
    return name.removeprefix("exda_") if name.startswith("exda_") else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=256, help="square input size for FLOPs (default 256)")
    parser.add_argument("--filter", default="", help="only models whose name contains this text")


def run(args: argparse.Namespace) -> int:
    if args.size < 8:
        raise UserError(f"--size must be at least 8 px, got {args.size}")
    rows = []
    stats: dict[str, tuple[int, int]] = {}
    for name in list_models():
        if args.filter not in name:
            continue
        stats[name] = profile_model(name, (args.size, args.size))
    print(f"| model | parameters | GFLOPs @{args.size} | ExDA params overhead | ExDA FLOPs overhead |")
    print("|---|---:|---:|---:|---:|")
    for name, (params, flops) in stats.items():
        base = backbone_of(name)
        overhead = ("", "")
        if base is not None:
            base_params, base_flops = _live_backbone(base, args.size)
            overhead = (f"{100 * (params / base_params - 1):+.2f}%", f"{100 * (flops / base_flops - 1):+.2f}%")
        rows.append(f"| {name} | {params:,} | {flops / 1e9:.1f} | {overhead[0]} | {overhead[1]} |")
    print("\n".join(rows))
    if "promptir" in stats:
        print("\npromptir's count includes 215,296 parameters of six convolutions the original PromptIR "
              "defines but never calls; ExDA overheads are against the live network without them.")
    return 0


def _live_backbone(name: str, size: int) -> tuple[int, int]:
    """Backbone parameters and FLOPs without PromptIR's never-called convolutions."""
    kwargs = {"prompts": PROMPTS["base"]} if name == "promptir" else {}
    return profile_model(name, (size, size), **kwargs)
