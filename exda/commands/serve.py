"""``exda serve``: a local web page that restores uploads and degrades with a seed and restores (Gradio).

The page, its work folder and its lanes are :class:`exda.inference.serve.Server`; this module reads the
options and runs it until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import math
import signal
from pathlib import Path
from typing import Any

from exda.commands.options import ARCH_HELP, CHECKPOINT_HELP, parse_max_pixels
from exda.errors import UserError
from exda.inference.restorer import memory_budget
from exda.inference.serve import DEFAULT_TIME_LIMIT_S, SERVE_MAX_PIXELS, ServeOptions, Server


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help=CHECKPOINT_HELP + "; loaded at start; default: the shipped default models")
    parser.add_argument("--arch", default=None, metavar="NAME", help=ARCH_HELP)
    parser.add_argument("--allow-checkpoints", type=Path, default=None, metavar="DIR",
                        help="show the page's checkpoint box and let it name checkpoints inside DIR (symlinks "
                             "resolved; nothing outside); default: no box")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--max-pixels", default=None, metavar="N",
                        help=f"refuse images of more than N pixels, from their header (default {SERVE_MAX_PIXELS:,}; "
                             "exda restore allows more)")
    parser.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT_S, metavar="SECONDS",
                        help=f"stop a restoration that runs longer (default {DEFAULT_TIME_LIMIT_S:g}; waiting in the "
                             "queue does not count)")
    parser.add_argument("--max-memory", default=None, metavar="SIZE",
                        help="tile automatically when a whole-image pass would need more than SIZE, as exda restore "
                             "(per restoration: a small and a large image can run at once)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="as exda restore: auto = bf16 where the hardware runs it natively")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")


def options_from(args: argparse.Namespace) -> ServeOptions:
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be in 1..65535, got {args.port}")
    if not (args.time_limit > 0 and math.isfinite(args.time_limit)):
        raise UserError(f"--time-limit must be a positive number of seconds, got {args.time_limit:g}")
    max_pixels = SERVE_MAX_PIXELS if args.max_pixels is None else parse_max_pixels(args.max_pixels)
    memory_budget(args.max_memory)  # a malformed size fails now
    return ServeOptions(checkpoint=args.checkpoint, arch=args.arch, allow_checkpoints=args.allow_checkpoints,
                        max_memory=args.max_memory, max_pixels=max_pixels, time_limit=args.time_limit,
                        precision=args.precision, device=args.device)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # Gradio's launch loop closes the server on it; run() then cleans up


def run(args: argparse.Namespace) -> int:
    server = Server(options_from(args))
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _interrupt)
        print(f"exda serve: open http://{args.host}:{args.port} (Ctrl-C stops); files in {server.folder.root}",
              flush=True)
        server.launch(server_name=args.host, server_port=args.port, show_error=True, quiet=True)
    finally:
        server.close()
    return 0

