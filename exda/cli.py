"""The `exda` command line: one entry point; sub-command NAME lives in ``exda/commands/NAME.py``.

Each sub-command module exposes ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from exda import __version__
from exda.errors import UserError

# name -> one-line help; the module is exda.commands.<name>. Explicit on purpose: no folder scanning.
SUBCOMMANDS: dict[str, str] = {
    "models": "list registered models with parameters and GFLOPs",
    "degrade": "synthesise a reproducible degraded benchmark from clean images",
    "train": "train a model from a YAML preset",
    "eval": "evaluate a checkpoint on a dataset (PSNR/SSIM tables)",
    "restore": "restore an image or a folder (default model or a checkpoint)",
    "demo": "default model vs degraded input vs classical methods on held-out photos",
    "convert": "a published .pth / .ckpt checkpoint as an exda one",
    "export": "write a checkpoint or the default model as ONNX (dynamic height and width)",
    "bench": "measure this machine: matmul peak, inference paths and backends, training steps",
    "serve": "a local web page: restore uploads, degrade with a seed and restore (Gradio)",
    "analyze": "analyses of checkpoints: embeddings, spectra, separability (JSON + plot)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="exda", description="All-in-one blind image restoration (ExDA).")
    parser.add_argument("--version", action="version", version=f"exda {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in SUBCOMMANDS.items():
        module = importlib.import_module(f"exda.commands.{name}")
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except UserError as err:
        print(f"exda {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"exda {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early: not an error of ours
        sys.stderr.close()
        return 0


def _one_line(err: UserError) -> str:
    """The user's message. A DataLoader worker re-raises a UserError with the worker's whole traceback
    in the message; its last line holds the original message."""
    lines = [line for line in str(err).splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    prefix = f"{UserError.__module__}.{UserError.__qualname__}: "
    return last.removeprefix(prefix) if len(lines) > 1 else last


if __name__ == "__main__":
    sys.exit(main())
