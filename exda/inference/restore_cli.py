"""``exda restore``: restore one image or a folder of images, with the shipped default model or a checkpoint.

Without ``--checkpoint`` the default photo model restores photos and the default medical model DICOM and
NIfTI files (``--model`` chooses). Any size: when a whole-image pass would exceed ``--max-memory``, the
image is tiled automatically (one line says so); ``--tile`` sets tiles by hand. 8/16-bit PNG, JPEG,
TIFF, grayscale or RGB; alpha is set aside and re-attached. Outputs keep the source precision (16-bit
in, 16-bit out) and TIFF stays TIFF; everything else is written as PNG (``.npy`` stays ``.npy``), unless
``-o`` names a ``.jpg`` / ``.webp`` file (``--quality``). The model runs on the fast inference path
(exda/inference/fast.py).

Reliability: every output path is checked (supported type, writable folder, never an input, not an
existing file unless ``--overwrite``) before any model runs; each output is written atomically. A folder
run restores every file it can, prints one line per file that fails and a summary, and exits 1 when any
failed (2 for a usage error, as everywhere).
Images above ``--max-pixels`` are refused from their header (a decompression-bomb guard).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from exda.data.io import (
    DEFAULT_MAX_PIXELS,
    SAVE_SUFFIXES,
    image_stem,
    image_suffix,
    list_images,
    load_image,
    save_image,
    to_numpy,
    to_tensor,
)
from exda.data.transforms import match_channels
from exda.engine.checkpoint import load_checkpoint_or_pretrained
from exda.errors import UserError
from exda.inference.backends import BACKENDS, build_backend
from exda.inference.fast import optimize_for_inference
from exda.inference.memory import (
    default_budget,
    estimate_peak_bytes,
    first_width,
    format_size,
    parse_size,
    tile_for_budget,
)
from exda.inference.pretrained import DEFAULT_MODELS, default_checkpoint, default_kind
from exda.inference.tiling import restore

_KEEP_SUFFIXES = (".tif", ".tiff", ".npy")
CHECKPOINT_HELP = (
    "a .safetensors checkpoint or a run folder; a run folder means its last checkpoint; "
    "pass .../best.safetensors explicitly for the best-on-validation one; or a published .pth / .ckpt (see --arch)"
)
ARCH_HELP = "model of a published --checkpoint (`exda models`); default: inferred from its weights"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="an image file or a folder of images")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="output file (or folder for a folder input); default <stem>_restored.png "
                             "next to the file, or <folder>_restored/")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help=CHECKPOINT_HELP + "; default: the shipped default model (see --model)")
    parser.add_argument("--arch", default=None, metavar="NAME", help=ARCH_HELP)
    parser.add_argument("--model", choices=("auto", *DEFAULT_MODELS), default="auto",
                        help="which shipped default model without --checkpoint: auto = medical for DICOM/NIfTI "
                             "inputs, photo otherwise")
    parser.add_argument("--backend", choices=BACKENDS, default="torch",
                        help="inference engine (onnxruntime/openvino need `pip install exda[backends]`)")
    parser.add_argument("--max-memory", default=None, metavar="SIZE",
                        help="tile automatically when a whole-image pass would need more than SIZE "
                             "(e.g. 2G; default: a quarter of the available memory, at most 2 GiB)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace outputs that exist already (default: refuse, before any image is restored)")
    parser.add_argument("--quality", type=int, default=95, metavar="Q",
                        help="JPEG / WebP output quality, 1-100 (default 95)")
    parser.add_argument("--max-pixels", default=None, metavar="N",
                        help=f"refuse images of more than N pixels, read from the header before decoding "
                             f"(a decompression-bomb guard; default {DEFAULT_MAX_PIXELS:,}); raise it on purpose "
                             "for huge images, e.g. 4e8")
    add_inference_arguments(parser)


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


def _check_folder_writable(folder: Path) -> None:
    """Create ``folder`` if needed and prove a file can be made in it; one clear line otherwise."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"cannot write outputs to {folder}: {existing} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".exda-write-check-", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UserError(f"cannot write outputs to {folder}: {err.strerror or err}") from None


def check_outputs(pairs: list[tuple[Path, Path]], quality: int, overwrite: bool = False) -> None:
    """Every destination: a type we can write, not a folder, in a writable folder, and not an existing file
    unless ``overwrite``; checked before any model runs."""
    if not 1 <= quality <= 100:
        raise UserError(f"--quality must be 1-100, got {quality}")
    existing = [dst for _, dst in pairs if dst.is_file()]
    if existing and not overwrite:
        if len(existing) == 1:
            raise UserError(f"{existing[0]} exists; pass --overwrite to replace it")
        names = ", ".join(dst.name for dst in existing[:3]) + (", ..." if len(existing) > 3 else "")
        raise UserError(f"{len(existing)} outputs exist already ({names} in {existing[0].parent}); pass --overwrite "
                        "to replace them")
    for _, dst in pairs:
        if image_suffix(dst) not in SAVE_SUFFIXES:
            raise UserError(f"cannot write '{image_suffix(dst) or dst.name}' files (use one of "
                            f"{', '.join(SAVE_SUFFIXES)}): {dst}")
        if dst.is_dir():
            raise UserError(f"output {dst} is a folder; give a file name or a folder input")
    for folder in dict.fromkeys(dst.parent for _, dst in pairs):
        _check_folder_writable(folder)


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
        say(f"{src.name} is RGB but the model takes 1 channel; restoring its luma")
    return match_channels(pixels, in_channels), channels == 1 and in_channels == 3


def memory_budget(text: str | None) -> int:
    """--max-memory in bytes (its default when None); one clear line for a malformed size."""
    if text is None:
        return default_budget()
    try:
        return parse_size(text)
    except ValueError:
        raise UserError(f"--max-memory must be a size like 2G, 512M or 3.5GiB, got {text!r}") from None


def say(message: str) -> None:
    """One line on stderr that never lands on a progress bar's line (tqdm clears and redraws the bars)."""
    tqdm.write(f"exda restore: {message}", file=sys.stderr)


def restore_image(
    model: nn.Module, x: torch.Tensor, *, tile: int | None, overlap: int, budget: int, width: int = 64,
    progress: bool = False, name: str = "the image", notify: Callable[[str], None] | None = None,
) -> tuple[torch.Tensor, int | None]:
    """Restore one 1 x C x H x W image in [0, 1], tiled when ``tile`` is set or when a whole pass would
    exceed ``budget`` bytes (``notify`` gets one line saying so); returns the output clamped to [0, 1] (the
    networks' own output overshoots slightly) and the tile size used (None: whole image). The memory rule
    of ``exda restore``, ``exda serve`` and :func:`exda.restore`; ``width`` is the network's
    full-resolution feature width."""
    h, w = x.shape[-2:]
    if tile is None and (tile := tile_for_budget(width, h, w, budget)) is not None:
        overlap = min(overlap, tile // 2)  # a --tile-overlap meant for larger tiles must not break these
        if notify is not None:
            need = format_size(estimate_peak_bytes(width, h, w))
            notify(f"{name} ({w}x{h}) would need about {need} in one pass, more than --max-memory "
                   f"{format_size(budget)}; restoring in {tile} px tiles")
    return restore(model, x, tile=tile, overlap=overlap, progress=progress).clamp(0, 1), tile


def restore_file(
    model: nn.Module, src: Path, dst: Path, *, tile: int | None, overlap: int, budget: int,
    in_channels: int = 3, width: int = 64, max_pixels: int = DEFAULT_MAX_PIXELS, quality: int = 95,
) -> int | None:
    """Load, restore (tiled when asked or when the whole image would exceed ``budget``) and save one
    image, keeping its bit depth and alpha. ``model`` maps fp32 tensors to fp32 tensors; ``width`` is the
    network's full-resolution feature width, for the memory estimate. Returns the tile size used (None:
    whole image)."""
    image = load_image(src, max_pixels=max_pixels)
    if image.nonfinite:
        say(f"{src.name} holds {image.nonfinite} NaN/Inf values; restored with them replaced by the finite "
            "minimum (NaN, -Inf) or maximum (+Inf)")
    if image.alpha is not None and image_suffix(dst) in (".jpg", ".jpeg"):
        say(f"{src.name} has an alpha channel, which JPEG cannot store; {dst.name} drops it")
    pixels, to_gray = _fit_channels(image.pixels, in_channels, src)
    x = to_tensor(pixels).unsqueeze(0)
    out, tile = restore_image(model, x, tile=tile, overlap=overlap, budget=budget, width=width, progress=True,
                              name=src.name, notify=say)
    restored = to_numpy(out[0])
    if to_gray:
        restored = match_channels(restored, 1)
    try:
        save_image(dst, restored, bit_depth=image.bit_depth, alpha=image.alpha, quality=quality)
    except OSError as err:  # full disk, quota, a folder that became read-only: the temp file is gone
        raise UserError(f"cannot write {dst}: {err.strerror or err}") from err
    return tile


class BackendModel(nn.Module):
    """An ONNX Runtime / OpenVINO restorer behind the nn.Module call the tiler uses (no parameters)."""

    def __init__(self, restorer) -> None:
        super().__init__()
        self.restorer = restorer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.restorer(x)


def inference_model(net: nn.Module, backend: str, precision: str) -> nn.Module:
    """``net`` on the fast PyTorch path, or exported to ``backend``; fp32 tensors in and out."""
    fast = optimize_for_inference(net, precision=precision)
    if backend == "torch":
        return fast
    return BackendModel(build_backend(backend, net, bf16=fast.bf16 and backend == "openvino"))


def _failure_line(err: Exception) -> str:
    """One line for a file that could not be restored (the path is in a UserError's own message)."""
    text = " ".join(str(err).split())
    if isinstance(err, UserError):
        return text
    if isinstance(err, OSError) and err.strerror:
        text = f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    return f"{type(err).__name__}: {text}"


class _Models:
    """The restorer each input gets: the --checkpoint for all, or the default model of its kind (photo,
    or medical for DICOM / NIfTI with --model auto), each loaded once, on first use, with one line."""

    def __init__(self, args: argparse.Namespace, device: torch.device, count: dict[str, int]) -> None:
        self.args, self.device, self.count = args, device, count
        self.loaded: dict[str, tuple[nn.Module, nn.Module]] = {}
        if args.checkpoint is not None:  # a wrong --checkpoint fails now, before any image
            self.get(args.checkpoint)

    def kind(self, src: Path) -> str:
        return self.args.model if self.args.model != "auto" else default_kind(image_suffix(src))

    def get(self, src: Path) -> tuple[nn.Module, nn.Module]:
        """(inference model, network) for ``src``."""
        key = "checkpoint" if self.args.checkpoint is not None else self.kind(src)
        if key not in self.loaded:
            path = self.args.checkpoint if key == "checkpoint" else default_checkpoint(key)
            net, info = load_checkpoint_or_pretrained(path, device=self.device, arch=self.args.arch)
            if key != "checkpoint":
                params = sum(p.numel() for p in net.parameters())
                files = self.count[key]
                used_for = f" for {files} file{'s' if files != 1 else ''}" if sum(self.count.values()) > 1 else ""
                say(f"default {key} model ({info['model_name']}, {params / 1e6:.2f}M parameters, step "
                    f"{info['step']}; docs/model_card.md){used_for}")
            precision = "bf16" if self.args.bf16 else self.args.precision
            self.loaded[key] = (inference_model(net, self.args.backend, precision), net)
        return self.loaded[key]


def run(args: argparse.Namespace) -> int:
    """Restore every input; returns 0 when all were restored, 1 when any failed (each named on one line)."""
    check_tiling(args.tile, args.tile_overlap)
    max_pixels = parse_max_pixels(args.max_pixels)
    pairs = plan_outputs(args.input, args.output)
    check_outputs(pairs, args.quality, args.overwrite)
    budget = memory_budget(args.max_memory)
    device = inference_device(args.device)
    kinds = [default_kind(image_suffix(src)) if args.model == "auto" else args.model for src, _ in pairs]
    models = _Models(args, device, {kind: kinds.count(kind) for kind in kinds})
    single = len(pairs) == 1 and not args.input.is_dir()
    failed: list[Path] = []
    for src, dst in tqdm(pairs, desc="images", unit="img", disable=len(pairs) == 1):
        try:
            model, net = models.get(src)
            restore_file(model, src, dst, tile=args.tile, overlap=args.tile_overlap, budget=budget,
                         in_channels=net.in_channels, width=first_width(net), max_pixels=max_pixels,
                         quality=args.quality)
        except Exception as err:  # one bad file must not stop the folder; each failure is one line
            if single and isinstance(err, (UserError, OSError, MemoryError)):
                raise UserError(_failure_line(err)) from err
            if single:
                raise
            failed.append(src)
            tqdm.write(f"exda restore: failed: {src.name}: {_failure_line(err)}", file=sys.stderr)
    restored = len(pairs) - len(failed)
    where = pairs[0][1] if single else pairs[0][1].parent
    if failed:
        print(f"{restored} restored, {len(failed)} failed: {', '.join(src.name for src in failed)}"
              + (f" (outputs in {where})" if restored else ""))
    else:
        print(f"restored {restored} image{'s' if restored != 1 else ''} -> {where}")
    print(peak_memory_line(device))
    return 1 if failed else 0
