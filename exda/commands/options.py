"""Options shared by several commands, defined once so that they read the same everywhere."""

from __future__ import annotations

import argparse

from exda.data.io import DEFAULT_MAX_PIXELS
from exda.errors import UserError

CHECKPOINT_HELP = (
    "a .safetensors checkpoint or a run folder; a run folder means its last checkpoint; "
    "pass .../best.safetensors explicitly for the best-on-validation one; or a published .pth / .ckpt (see --arch)"
)
ARCH_HELP = "model of a published --checkpoint (`exda models`); default: inferred from its weights"


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``exda restore`` and ``exda eval``: tiling, bf16, device."""
    parser.add_argument("--tile", type=int, default=None, metavar="N",
                        help="restore in N x N tiles to bound memory on large images (default: whole image)")
    parser.add_argument("--tile-overlap", type=int, default=32, metavar="M",
                        help="overlap between tiles in px (default 32; at most half the tile)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="auto = bf16 where the hardware runs it natively (AMX / AVX-512 BF16 CPUs, "
                             "CUDA), fp32 elsewhere")
    parser.add_argument("--bf16", action="store_true", help="same as --precision bf16")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="default: cuda when available, else cpu")


def parse_max_pixels(text: str | None) -> int:
    """--max-pixels as a positive integer (``400000000``, ``4e8``, ``400_000_000``)."""
    if text is None:
        return DEFAULT_MAX_PIXELS
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        value = 0.0
    if not (value >= 1 and value < float("inf")):
        raise UserError(f"--max-pixels must be a positive number of pixels like 400000000 or 4e8, got {text!r}")
    return int(value)
