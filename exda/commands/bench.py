"""``exda bench``: one machine's speed, measured in one run (the measurements: :mod:`exda.engine.bench`).

    exda bench                                   # full size: 256 and 512 px, every path and backend, training
    exda bench --models exda_restormer_small --sizes 128 --skip-train
    python benchmarks/speed.py --device cuda --compile
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from exda.engine.bench import BACKEND_PATHS, measure
from exda.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", default=["restormer", "exda_restormer"],
                        help="inference models (default: restormer exda_restormer)")
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 512], help="square input sizes (default 256 512)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per row; the median is reported")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before them (default 2)")
    parser.add_argument("--compile", action="store_true", help="add the fast path with torch.compile (slow to build)")
    parser.add_argument("--aot", nargs="+", default=None, metavar="MODEL",
                        help="add the compiled path for these models (AOTInductor artefact from the cache, compiled "
                             "first when absent: minutes)")
    parser.add_argument("--official", default=None, metavar="PATH",
                        help="add the official Restormer code's fp32 eager row (PATH: a swz30/Restormer checkout; "
                             "needs einops on PYTHONPATH)")
    parser.add_argument("--concurrent-load", action="store_true",
                        help="add fast-path rows with a busy loop holding one core (idle-core threads vs all)")
    parser.add_argument("--skip-backends", action="store_true", help="no onnxruntime / OpenVINO rows")
    parser.add_argument("--backend-paths", nargs="+", choices=list(BACKEND_PATHS), default=None,
                        help="only these ONNX backend rows (default: every available one)")
    parser.add_argument("--paths", nargs="+", default=None, metavar="PATH",
                        help="only these inference paths (e.g. fast fast_loaded fast_loaded_all_threads)")
    parser.add_argument("--skip-train", action="store_true", help="no training-step rows")
    parser.add_argument("--train-models", nargs="+", default=["exda_restormer_small", "exda_restormer_tiny"],
                        help="training-step models (default: exda_restormer_small exda_restormer_tiny)")
    parser.add_argument("--train-batch", type=int, default=8, help="training batch size (default 8)")
    parser.add_argument("--train-patch", type=int, default=128, help="training patch size (default 128)")
    parser.add_argument("--matmul-size", type=int, default=2048, help="n of the n x n x n peak matmul (default 2048)")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's choice)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON output (default speed_<device>.json in the current folder)")


def _check(args: argparse.Namespace) -> None:
    from exda.models.registry import list_models

    known = set(list_models())
    for name in [*args.models, *([] if args.skip_train else args.train_models)]:
        if name not in known:
            raise UserError(f"unknown model {name!r}; known: {', '.join(sorted(known))}")
    positive = {"--sizes": min(args.sizes), "--repeats": args.repeats, "--train-batch": args.train_batch,
                "--train-patch": args.train_patch, "--matmul-size": args.matmul_size, "--threads": args.threads or 1}
    for flag, value in positive.items():
        if value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}")
    if args.warmup < 0:
        raise UserError(f"--warmup must be >= 0, got {args.warmup}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device here")


def run(args: argparse.Namespace) -> int:
    _check(args)
    return measure(args)


def main(argv: list[str] | None = None) -> int:
    """``exda bench`` as a function (``benchmarks/speed.py`` calls it)."""
    from exda.cli import main as cli_main

    return cli_main(["bench", *(sys.argv[1:] if argv is None else argv)])
