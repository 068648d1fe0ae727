"""``exda restore``: restore one image or a folder of images, with the shipped default model or a checkpoint.

Without ``--checkpoint`` the default photo model restores photos and the default medical model DICOM and
NIfTI files (``--model`` chooses). Any size: when a whole-image pass would exceed ``--max-memory``, the
image is tiled automatically (one line says so); ``--tile`` sets tiles by hand. 8/16-bit PNG, JPEG,
TIFF, grayscale or RGB; alpha is set aside and re-attached. Outputs keep the source precision (16-bit
in, 16-bit out) and TIFF stays TIFF; everything else is written as PNG (``.npy`` stays ``.npy``), unless
``-o`` names a ``.jpg`` / ``.webp`` file (``--quality``). The model runs on the fast inference path
(exda/inference/fast.py); models load through :class:`exda.inference.restorer.Restorer`, once per
process.

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

import torch
from tqdm import tqdm

from exda.commands.options import ARCH_HELP, CHECKPOINT_HELP, add_inference_arguments, parse_max_pixels
from exda.data.io import DEFAULT_MAX_PIXELS, SAVE_SUFFIXES, image_stem, image_suffix, list_images
from exda.errors import UserError
from exda.inference.backends import BACKENDS
from exda.inference.compiled import COMPILE_MODES
from exda.inference.pretrained import DEFAULT_MODELS, default_checkpoint, default_kind
from exda.inference.restorer import RESTORERS, Restorer, check_tiling, inference_device, memory_budget
from exda.inference.threads import set_threads

_KEEP_SUFFIXES = (".tif", ".tiff", ".npy")


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
    parser.add_argument("--compile", choices=COMPILE_MODES, default="auto",
                        help="compiled fast path (CPU, torch backend): auto = use a cached artefact, or compile "
                             "when the work is large enough to win the compile back; on = always; off = eager")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads (default: the cores idle now, so a busy machine does not stall the run)")
    add_inference_arguments(parser)


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


def say(message: str) -> None:
    """One line on stderr that never lands on a progress bar's line (tqdm clears and redraws the bars)."""
    tqdm.write(f"exda restore: {message}", file=sys.stderr)


def _failure_line(err: Exception) -> str:
    """One line for a file that could not be restored (the path is in a UserError's own message)."""
    text = " ".join(str(err).split())
    if isinstance(err, UserError):
        return text
    if isinstance(err, OSError) and err.strerror:
        text = f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    return f"{type(err).__name__}: {text}"


def _model_choice(args: argparse.Namespace, device: torch.device, count: dict[str, int]
                  ) -> Callable[[Path | None], Restorer]:
    """The restorer each input gets: the --checkpoint for all, or the default model of its kind (photo, or
    medical for DICOM / NIfTI with --model auto), said in one line when first used."""
    options = dict(arch=args.arch, backend=args.backend, precision="bf16" if args.bf16 else args.precision,
                   device=device, compile=args.compile)
    said: set[str] = set()

    def restorer_for(src: Path | None) -> Restorer:
        if args.checkpoint is not None:
            return RESTORERS.get(args.checkpoint, **options)
        kind = args.model if args.model != "auto" else default_kind(image_suffix(src))
        restorer = RESTORERS.get(default_checkpoint(kind), **options)
        if kind not in said:
            said.add(kind)
            files = count[kind]
            used_for = f" for {files} file{'s' if files != 1 else ''}" if sum(count.values()) > 1 else ""
            say(f"default {kind} model ({restorer.info.summary()}; docs/model_card.md){used_for}")
        return restorer

    if args.checkpoint is not None:  # a wrong --checkpoint fails now, before any image
        restorer_for(None)
    return restorer_for


def run(args: argparse.Namespace) -> int:
    """Restore every input; returns 0 when all were restored, 1 when any failed (each named on one line)."""
    check_tiling(args.tile, args.tile_overlap)
    max_pixels = parse_max_pixels(args.max_pixels)
    pairs = plan_outputs(args.input, args.output)
    check_outputs(pairs, args.quality, args.overwrite)
    budget = memory_budget(args.max_memory)
    device = inference_device(args.device)
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    threads = set_threads(args.threads) if device.type == "cpu" else None
    kinds = [default_kind(image_suffix(src)) if args.model == "auto" else args.model for src, _ in pairs]
    restorer_for = _model_choice(args, device, {kind: kinds.count(kind) for kind in kinds})
    single = len(pairs) == 1 and not args.input.is_dir()
    failed: list[Path] = []
    paths_used: set[str] = set()
    for src, dst in tqdm(pairs, desc="images", unit="img", disable=len(pairs) == 1):
        try:
            restorer = restorer_for(src)
            restorer.restore_file(src, dst, tile=args.tile, overlap=args.tile_overlap, budget=budget,
                                  max_pixels=max_pixels, quality=args.quality, notify=say)
            paths_used.add(restorer.describe_path())
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
    for line in sorted(paths_used):
        print("path: " + line + (f", {threads} thread{'s' if threads != 1 else ''}" if threads else ""))
    print(peak_memory_line(device))
    return 1 if failed else 0
