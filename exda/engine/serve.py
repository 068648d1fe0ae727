"""``exda serve``: a local web page (Gradio) to restore images and to try the degradations.

Tab "Restore": upload an image, restore it with the shipped default model (photo; medical for DICOM /
NIfTI) or a checkpoint on this machine, see input and output on a before/after slider with the time
taken, and download the full-resolution result. Tab "Degrade and restore": apply any registered
degradation with a seed to a clean image, restore it, and read PSNR / SSIM against the clean image.

Both tabs restore through :func:`exda.engine.restore_cli.restore_file`, the code path of ``exda
restore``: same loading (8/16-bit, alpha), same bounded memory (automatic tiling above
``--max-memory``), same output format. Nothing leaves this machine: the page binds to 127.0.0.1 by
default and Gradio's analytics are switched off. Needs ``pip install exda[serve]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from exda.data.io import image_stem, image_suffix, load_image, save_image, to_tensor
from exda.data.transforms import match_channels
from exda.degradations import DegradationSampler, list_degradations
from exda.engine.checkpoint import load_for_inference, resolve_checkpoint
from exda.engine.memory import first_width, format_size
from exda.engine.pretrained import default_checkpoint, default_kind
from exda.engine.restore_cli import (
    CHECKPOINT_HELP,
    inference_device,
    inference_model,
    memory_budget,
    restore_file,
)
from exda.errors import UserError
from exda.metrics import psnr, ssim

PREVIEW_SIDE = 1600  # longest side of the images sent to the page; the download keeps full resolution
TILE_OVERLAP = 32


@dataclass
class LoadedModel:
    """A restorer on the fast inference path, with what the page says about it."""

    model: nn.Module
    in_channels: int
    width: int
    description: str


class Restorer:
    """Loads each checkpoint once (thread-safe) and restores files with ``exda restore``'s code path."""

    def __init__(self, checkpoint: Path | None, budget: int, precision: str, device: torch.device) -> None:
        self.checkpoint = checkpoint
        self.budget = budget
        self.precision = precision
        self.device = device
        self._models: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

    def model_for(self, source: Path, checkpoint_text: str | None) -> LoadedModel:
        """The model chosen on the page (a checkpoint path), else the server's, else the default for
        ``source``'s type."""
        text = (checkpoint_text or "").strip()
        if text:
            path = resolve_checkpoint(Path(text).expanduser())
            label = f"checkpoint {path}"
        elif self.checkpoint is not None:
            path = resolve_checkpoint(self.checkpoint)
            label = f"checkpoint {path}"
        else:
            kind = default_kind(image_suffix(source))
            path, label = default_checkpoint(kind), f"default {kind} model"
        key = str(path.resolve())
        with self._lock:
            if key not in self._models:
                net, info = load_for_inference(path, device=self.device)
                params = sum(p.numel() for p in net.parameters())
                description = (f"{label} ({info['model_name']}, {params / 1e6:.2f}M parameters, "
                               f"step {info['step']})")
                self._models[key] = LoadedModel(inference_model(net, "torch", self.precision),
                                                net.in_channels, first_width(net), description)
            return self._models[key]

    def restore(self, source: Path, checkpoint_text: str | None, out_dir: Path) -> tuple[Path, str]:
        """Restore ``source`` into ``out_dir``; returns the output file and one line for the page."""
        loaded = self.model_for(source, checkpoint_text)
        suffix = image_suffix(source)
        name = image_stem(source) + "_restored" + (suffix if suffix in (".tif", ".tiff") else ".png")
        dst = out_dir / name
        start = time.perf_counter()
        with self._lock:  # one restoration at a time: the memory budget is for the whole process
            tile = restore_file(loaded.model, source, dst, tile=None, overlap=TILE_OVERLAP, budget=self.budget,
                                in_channels=loaded.in_channels, width=loaded.width)
        seconds = time.perf_counter() - start
        how = "whole image" if tile is None else f"{tile} px tiles (over --max-memory {format_size(self.budget)})"
        return dst, f"{seconds:.2f} s on {self.device.type}, {how}; {loaded.description}"


def _checked_upload(path: str | None) -> Path:
    """The uploaded file's path, or a message the page shows."""
    if not path:
        raise UserError("upload an image first")
    return Path(path)


def preview(pixels: np.ndarray) -> np.ndarray:
    """8-bit RGB for the page, at most PREVIEW_SIDE px on the longest side."""
    rgb = match_channels(pixels, 3)
    h, w = rgb.shape[:2]
    scale = PREVIEW_SIDE / max(h, w)
    if scale < 1:
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        rgb = torch.nn.functional.interpolate(x, size=size, mode="area")[0].permute(1, 2, 0).numpy()
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _scores(image: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    a, b = to_tensor(image)[None].double(), to_tensor(clean)[None].double()
    return float(psnr(a, b)), float(ssim(a, b))


class Pages:
    """The two tabs' functions (plain Python; the Gradio layer only wires them up)."""

    def __init__(self, restorer: Restorer, workdir: Path) -> None:
        self.restorer = restorer
        self.workdir = workdir

    def _request_dir(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="request-", dir=self.workdir))

    def restore(self, upload: str | None, checkpoint_text: str | None) -> tuple[Any, str, str]:
        """Tab 1: (before/after pair, restored file, info line)."""
        source = _checked_upload(upload)
        before = load_image(source).pixels  # a file that is no image fails here, with one line
        restored_path, line = self.restorer.restore(source, checkpoint_text, self._request_dir())
        after = load_image(restored_path).pixels
        h, w = before.shape[:2]
        return (preview(before), preview(after)), str(restored_path), f"{w}x{h} restored in {line}"

    def degrade_and_restore(
        self, upload: str | None, degradation: str, seed: float, strength: float, checkpoint_text: str | None,
    ) -> tuple[Any, np.ndarray, str, str]:
        """Tab 2: (degraded/restored pair, clean preview, scores as Markdown, restored file). The
        degradation runs on the whole image; the restoration is tiled like tab 1's."""
        source = _checked_upload(upload)
        if seed is None or int(seed) != seed or seed < 0:
            raise UserError(f"the seed must be a whole number >= 0, got {seed}")
        image = load_image(source)
        clean = image.pixels
        out_dir = self._request_dir()
        degraded_t, params = DegradationSampler(degradation, seed=int(seed), strength=strength)(
            to_tensor(clean)[None])
        degraded_path = out_dir / f"{image_stem(source)}_{degradation}_seed{int(seed)}.png"
        save_image(degraded_path, degraded_t[0].permute(1, 2, 0).numpy(), bit_depth=16)
        degraded = load_image(degraded_path).pixels
        restored_path, line = self.restorer.restore(degraded_path, checkpoint_text, out_dir)
        restored = match_channels(load_image(restored_path).pixels, clean.shape[2])
        (p_in, s_in), (p_out, s_out) = _scores(degraded, clean), _scores(restored, clean)
        table = (
            "| vs the clean image | PSNR (dB) | SSIM |\n|---|---:|---:|\n"
            f"| degraded | {p_in:.2f} | {s_in:.4f} |\n| restored | {p_out:.2f} | {s_out:.4f} |\n\n"
            f"Restored in {line}.\n\n`{degradation}` seed {int(seed)}, strength {strength:g}, parameters: "
            f"`{json.dumps(params)}`"
        )
        return (preview(degraded), preview(restored)), preview(clean), table, str(restored_path)


def build_app(pages: Pages):
    """The Gradio page: tab 1 restores, tab 2 degrades with a seed, restores and scores."""
    import gradio as gr

    def shown(fn):
        """Turn a user error into a message on the page."""
        def wrapped(*args):
            try:
                return fn(*args)
            except UserError as err:
                raise gr.Error(str(err), print_exception=False) from None
        wrapped.__name__ = fn.__name__
        return wrapped

    checkpoint_help = ("checkpoint (optional): a .safetensors file or run folder on this machine; empty = the one "
                       "exda serve was started with, else the shipped default model")
    with gr.Blocks(title="exda: all-in-one image restoration") as app:
        gr.Markdown("# exda: all-in-one image restoration\nRuns on this machine; nothing is uploaded elsewhere. "
                    "The shipped default model is small and CPU-trained: see docs/model_card.md for what it can do.")
        with gr.Tab("Restore"):
            with gr.Row():
                with gr.Column(scale=1):
                    upload = gr.File(label="image (PNG, JPEG, TIFF, .npy, DICOM, NIfTI)", type="filepath",
                                     elem_id="restore-upload")
                    checkpoint = gr.Textbox(label=checkpoint_help, elem_id="restore-ckpt")
                    button = gr.Button("Restore", variant="primary", elem_id="restore-button")
                    info = gr.Markdown(elem_id="restore-info")
                    download = gr.File(label="restored image, full resolution", elem_id="restore-download")
                with gr.Column(scale=2):
                    slider = gr.ImageSlider(label="input | restored (drag the handle)", type="numpy",
                                            format="png", elem_id="restore-slider")
            button.click(shown(pages.restore), [upload, checkpoint], [slider, download, info], api_name="restore")
        with gr.Tab("Degrade and restore"):
            with gr.Row():
                with gr.Column(scale=1):
                    clean_upload = gr.File(label="clean image", type="filepath", elem_id="degrade-upload")
                    names = list(list_degradations())
                    degradation = gr.Dropdown(names, value="underwater" if "underwater" in names else names[0],
                                              label="degradation")
                    seed = gr.Number(value=0, precision=0, label="seed", minimum=0)
                    strength = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="strength (1 = benchmark-typical)")
                    checkpoint2 = gr.Textbox(label=checkpoint_help)
                    button2 = gr.Button("Degrade and restore", variant="primary", elem_id="degrade-button")
                    scores = gr.Markdown(elem_id="degrade-scores")
                    download2 = gr.File(label="restored image, full resolution")
                with gr.Column(scale=2):
                    slider2 = gr.ImageSlider(label="degraded | restored", type="numpy", format="png")
                    clean_view = gr.Image(label="clean", type="numpy", format="png", interactive=False)
            button2.click(shown(pages.degrade_and_restore), [clean_upload, degradation, seed, strength, checkpoint2],
                          [slider2, clean_view, scores, download2], api_name="degrade_and_restore")
    return app


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help=CHECKPOINT_HELP + "; default: the shipped default models (the page can name another)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--max-memory", default=None, metavar="SIZE",
                        help="tile automatically when a whole-image pass would need more than SIZE, as exda restore")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="as exda restore: auto = bf16 where the hardware runs it natively")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")


def create_app(checkpoint: Path | None = None, max_memory: str | None = None, precision: str = "auto",
               device: str | None = None, workdir: Path | None = None):
    """The Gradio app for ``exda serve`` (also used by the tests). Work files go under ``workdir``
    (default: a new folder in the system temp directory, which Gradio serves downloads from)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UserError("exda serve needs Gradio: pip install 'exda[serve]'") from None
    if checkpoint is not None:
        resolve_checkpoint(checkpoint)  # a wrong --checkpoint fails now, not on the first request
    restorer = Restorer(checkpoint, memory_budget(max_memory), precision, inference_device(device))
    workdir = workdir if workdir is not None else Path(tempfile.mkdtemp(prefix="exda-serve-"))
    workdir.mkdir(parents=True, exist_ok=True)
    return build_app(Pages(restorer, workdir))


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be in 1..65535, got {args.port}")
    app = create_app(args.checkpoint, args.max_memory, args.precision, args.device)
    print(f"exda serve: open http://{args.host}:{args.port} (Ctrl-C stops)")
    app.launch(server_name=args.host, server_port=args.port, show_error=True, quiet=True, footer_links=[])
    return 0
