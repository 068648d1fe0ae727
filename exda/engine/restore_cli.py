"""``exda restore``: restore one image or a folder of images with a trained checkpoint.

Any size (tiled with ``--tile``), 8/16-bit PNG, JPEG, TIFF, grayscale or RGB; alpha is set aside and
re-attached. Outputs keep the source precision (16-bit in, 16-bit out) and TIFF stays TIFF; everything
else is written as PNG (``.npy`` stays ``.npy``). Inputs are never overwritten.
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from exda.data.io import image_stem, image_suffix, list_images, load_image, save_image, to_numpy, to_tensor
from exda.data.transforms import match_channels
from exda.engine.checkpoint import load_for_inference
from exda.engine.tiling import restore
from exda.errors import UserError

_KEEP_SUFFIXES = (".tif", ".tiff", ".npy")
CHECKPOINT_HELP = (
    "a .safetensors checkpoint or a run folder; a run folder means its last checkpoint; "
    "pass .../best.safetensors explicitly for the best-on-validation one"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="an image file or a folder of images")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="output file (or folder for a folder input); default <stem>_restored.png "
                             "next to the file, or <folder>_restored/")
    parser.add_argument("--checkpoint", type=Path, required=True, help=CHECKPOINT_HELP)
    add_inference_arguments(parser)


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``exda restore`` and ``exda eval``: tiling, bf16, device."""
    parser.add_argument("--tile", type=int, default=None, metavar="N",
                        help="restore in N x N tiles to bound memory on large images (default: whole image)")
    parser.add_argument("--tile-overlap", type=int, default=32, metavar="M",
                        help="overlap between tiles in px (default 32; at most half the tile)")
    parser.add_argument("--bf16", action="store_true", help="run the model under bfloat16 autocast")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="default: cuda when available, else cpu")


def inference_device(name: str | None) -> torch.device:
    """The requested device, or CUDA when available; asking for absent CUDA is a user error."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda requested but no CUDA device is available")
    return torch.device(name)


def check_tiling(tile: int | None, overlap: int) -> None:
    """One clear line for tile/overlap values the tiler cannot use."""
    if overlap < 0:
        raise UserError(f"--tile-overlap must be >= 0, got {overlap}")
    if tile is not None and (tile < 1 or 2 * overlap > tile):
        raise UserError(f"--tile must be positive and at least twice the overlap ({overlap}), got {tile}")


def peak_memory_line(device: torch.device) -> str:
    """Peak memory of this process: max RSS on the CPU, plus max allocated on a CUDA device."""
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if sys.platform == "darwin":  # macOS reports bytes, Linux KiB
        rss_kib //= 1024
    line = f"peak memory: CPU max RSS {rss_kib / 1024:.0f} MiB"
    if device.type == "cuda":
        line += f", CUDA max allocated {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB"
    return line


def _output_name(src: Path) -> str:
    suffix = image_suffix(src)
    return image_stem(src) + (suffix if suffix in _KEEP_SUFFIXES else ".png")


def plan_outputs(input_path: Path, output: Path | None) -> list[tuple[Path, Path]]:
    """Pairs (source, destination); refuses to overwrite any input or to write two outputs to one file."""
    if input_path.is_dir():
        sources = list_images(input_path)
        if not sources:
            raise UserError(f"no images found in {input_path}")
        if output is not None:
            folder = output
        else:
            resolved = input_path.resolve()  # "." and ".." have no name of their own
            if not resolved.name:
                raise UserError(f"give -o OUTPUT_FOLDER to restore the images in {resolved}")
            folder = resolved.with_name(f"{resolved.name}_restored")
        if folder.exists() and not folder.is_dir():
            raise UserError(f"output for a folder input must be a folder: {folder}")
        pairs = [(src, folder / _output_name(src)) for src in sources]
    elif input_path.is_file():
        default_name = _output_name(input_path)
        default_name = f"{image_stem(default_name)}_restored{image_suffix(default_name)}"
        if output is None:
            dst = input_path.with_name(default_name)
        else:
            dst = output / default_name if output.is_dir() else output
        pairs = [(input_path, dst)]
    else:
        raise UserError(f"input not found: {input_path}")
    inputs = {src.resolve() for src, _ in pairs}
    seen: set[Path] = set()
    for _, dst in pairs:
        resolved = dst.resolve()
        if resolved in inputs:
            raise UserError(f"output {dst} would overwrite an input image; choose another -o")
        if resolved in seen:
            raise UserError(f"two inputs would both be written to {dst} (same name, different type)")
        seen.add(resolved)
    return pairs


def _fit_channels(pixels: np.ndarray, in_channels: int, src: Path) -> tuple[np.ndarray, bool]:
    """Fit an image to the model's channels; returns the pixels and whether to save gray back."""
    channels = pixels.shape[2]
    if channels == 3 and in_channels == 1:
        print(f"exda restore: {src.name} is RGB but the model takes 1 channel; restoring its luma",
              file=sys.stderr)
    return match_channels(pixels, in_channels), channels == 1 and in_channels == 3


def restore_file(
    model: nn.Module, src: Path, dst: Path, *, tile: int | None, overlap: int, bf16: bool
) -> None:
    """Load, restore (tiled if asked) and save one image, keeping its bit depth and alpha."""
    image = load_image(src)
    pixels, to_gray = _fit_channels(image.pixels, getattr(model, "in_channels", 3), src)
    x = to_tensor(pixels).unsqueeze(0)
    restored = to_numpy(restore(model, x, tile=tile, overlap=overlap, bf16=bf16, progress=True)[0].clamp(0, 1))
    if to_gray:
        restored = match_channels(restored, 1)
    save_image(dst, restored, bit_depth=image.bit_depth, alpha=image.alpha)


def run(args: argparse.Namespace) -> int:
    check_tiling(args.tile, args.tile_overlap)
    pairs = plan_outputs(args.input, args.output)
    device = inference_device(args.device)
    model, _ = load_for_inference(args.checkpoint, device=device)
    for src, dst in tqdm(pairs, desc="images", unit="img", disable=len(pairs) == 1):
        restore_file(model, src, dst, tile=args.tile, overlap=args.tile_overlap, bf16=args.bf16)
    where = pairs[0][1] if len(pairs) == 1 else pairs[0][1].parent
    print(f"restored {len(pairs)} image{'s' if len(pairs) != 1 else ''} -> {where}")
    print(peak_memory_line(device))
    return 0
