"""``exda convert``: a published checkpoint (BasicSR .pth, Lightning .ckpt, plain state dict) as an exda one.

The result is an inference-only exda checkpoint (``OUT.safetensors`` plus its ``OUT.json`` record), which
``exda restore``, ``exda eval`` and ``exda export`` read like any trained run's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from exda.engine.checkpoint import save_checkpoint
from exda.errors import UserError
from exda.inference.checkpoint_format import WEIGHTS_SUFFIX
from exda.inference.loader import load_network


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="a published checkpoint (.pth / .ckpt / plain state dict)")
    parser.add_argument("output", type=Path, help=f"the exda checkpoint to write (*{WEIGHTS_SUFFIX})")
    parser.add_argument("--arch", default=None, metavar="NAME",
                        help="registered model name (`exda models`); default: inferred from the weights")


def run(args: argparse.Namespace) -> int:
    if args.output.suffix != WEIGHTS_SUFFIX:
        raise UserError(f"output must end in {WEIGHTS_SUFFIX}, got {args.output}")
    model, info = load_network(args.input, arch=args.arch)
    config = {"converted_from": str(args.input), "container": info.container,
              "model": {"name": model.model_name, "kwargs": model.model_kwargs}}
    path = save_checkpoint(args.output.parent, args.output.name.removesuffix(WEIGHTS_SUFFIX), model=model,
                           config=config, step=0, metrics={}, train_state=None)
    params = sum(p.numel() for p in model.parameters())
    print(f"exda convert: {args.input} -> {path} ({model.model_name}, {params:,} parameters)", file=sys.stderr)
    return 0
