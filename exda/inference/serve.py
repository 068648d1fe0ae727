"""The web page of ``exda serve`` (Gradio) to restore images and to try the degradations, fit to be shared;
the command itself is :mod:`exda.commands.serve`.

Tab "Restore": upload an image, restore it with the server's model (``--checkpoint``, else the shipped
default: photo; medical for DICOM / NIfTI), see input and output on a before/after slider with the time
taken, and download the full-resolution result. Tab "Degrade and restore": apply any registered
degradation with a seed to a clean image, restore it, and read PSNR / SSIM against the clean image.

Both tabs restore through :meth:`exda.inference.restorer.Restorer.restore_file`, the code path of ``exda
restore``: same loading (8/16-bit, alpha), same bounded memory (automatic tiling above
``--max-memory``), same output format; models come from the process's restorer cache, the one
:func:`exda.restore` uses. What makes the page safe to share:

- one temporary folder (``exda-serve-*`` in the system temp dir) holds uploads, previews and results
  (Gradio's cache is its ``gradio/`` subfolder); files older than ``RESULT_LIFETIME_S`` are deleted
  while the server runs, and the whole folder on exit (Ctrl-C, SIGTERM, SIGHUP);
- messages name files by their name only, never by a path on the server;
- ``--max-pixels`` refuses large images from their header, ``--time-limit`` stops long restorations;
- large images wait in their own lane (:mod:`exda.inference.serve_lanes`), and a restoration stops for real
  when its request is cancelled (the Stop button);
- ``--checkpoint`` is loaded completely at start; the page can name a checkpoint only with
  ``--allow-checkpoints DIR``, and then only inside DIR, with one message for every refusal.

Nothing leaves this machine: the page binds to 127.0.0.1 by default and Gradio's analytics are off.
Needs ``pip install exda[serve]``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from exda.data.io import TooManyPixels, image_stem, image_suffix, load_image, save_image, to_tensor
from exda.data.transforms import match_channels
from exda.degradations import DegradationSampler, list_degradations
from exda.errors import UserError
from exda.inference.checkpoint_format import resolve_checkpoint
from exda.inference.memory import format_size
from exda.inference.pretrained import default_checkpoint, default_kind
from exda.inference.restorer import RESTORERS, Restorer, inference_device, memory_budget
from exda.inference.serve_lanes import Job, Lane, Lanes, check_running_job, install_stop_checks
from exda.metrics import psnr, ssim

SERVE_MAX_PIXELS = 24_000_000  # e.g. 6000 x 4000; exda restore's default allows 179 megapixels
DEFAULT_TIME_LIMIT_S = 600.0
RESULT_LIFETIME_S = 20 * 60.0  # how long uploads and results stay downloadable
MAX_IN_FLIGHT = 16  # requests past Gradio's queue at once (waiting in a lane or running)
PREVIEW_SIDE = 1600  # longest side of the images sent to the page; the download keeps full resolution
TILE_OVERLAP = 32
NAME_CHARS = 80  # of an upload's name kept in its result's name
CHECKPOINT_REFUSED = ("checkpoint not available: this server restores only with checkpoints inside the folder "
                      "it was started with (exda serve --allow-checkpoints), named relative to that folder")


@dataclass(frozen=True)
class ServeOptions:
    """What ``exda serve``'s flags set."""

    checkpoint: Path | None = None
    arch: str | None = None
    allow_checkpoints: Path | None = None
    max_memory: str | None = None
    max_pixels: int = SERVE_MAX_PIXELS
    time_limit: float | None = DEFAULT_TIME_LIMIT_S
    precision: str = "auto"
    device: str | None = None
    result_lifetime: float = RESULT_LIFETIME_S


class WorkFolder:
    """The server's one temporary folder. ``files`` (``gradio/``) is Gradio's cache (GRADIO_TEMP_DIR):
    uploads in ``<hash>/`` folders, previews, and each request's results in ``request-*/``."""

    def __init__(self, parent: Path | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="exda-serve-", dir=parent))
        self.files = self.root / "gradio"
        self.files.mkdir()
        self._in_use: Counter[str] = Counter()
        self._lock = threading.Lock()

    @contextmanager
    def request_dir(self) -> Iterator[Path]:
        """A new folder for one request's results; removed again if the request fails."""
        path = Path(tempfile.mkdtemp(prefix="request-", dir=self.files))
        try:
            yield path
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise

    def _entry(self, path: Path) -> str | None:
        """The name of the top-level entry of ``files`` that holds ``path``, if any."""
        try:
            return Path(os.path.abspath(path)).relative_to(os.path.abspath(self.files)).parts[0]
        except (ValueError, IndexError):
            return None

    @contextmanager
    def using(self, path: Path) -> Iterator[None]:
        """Keep the entry holding ``path`` from being swept while a request uses it."""
        entry = self._entry(path)
        with self._lock:
            self._in_use[entry] += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_use[entry] -= 1

    def sweep(self, max_age: float) -> int:
        """Delete the entries of ``files`` not used by a request and not modified for ``max_age`` seconds;
        returns how many."""
        cutoff = time.time() - max_age
        removed = 0
        for entry in list(self.files.iterdir()):
            with self._lock:
                if self._in_use[entry.name] > 0 or _newest_mtime(entry) > cutoff:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
            removed += 1
        return removed

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def public(self, text: str) -> str:
        """``text`` without any path on this server: a file keeps its name, its folders are dropped."""
        for root in dict.fromkeys((str(self.root), os.path.realpath(self.root))):
            text = re.sub(re.escape(root) + r"/(?:[^/\s'\"]+/)*", "", text)
        return re.sub(r"(?<![\w.~-])/(?:[^/\s'\"]+/)+", "", text)  # any other absolute path's folders


def _newest_mtime(path: Path) -> float:
    try:
        newest = path.lstat().st_mtime
        if path.is_dir() and not path.is_symlink():
            for folder, _, names in os.walk(path):
                for name in names:
                    newest = max(newest, os.lstat(os.path.join(folder, name)).st_mtime)
        return newest
    except OSError:  # removed meanwhile
        return math.inf


@dataclass
class LoadedModel:
    """A restorer whose model has stop checks, and what the page says about it."""

    restorer: Restorer
    description: str


class Models:
    """The models a server restores with: its ``--checkpoint`` (loaded at start) or the shipped defaults,
    and checkpoints named on the page from the ``--allow-checkpoints`` folder. All come from the process's
    restorer cache (:data:`exda.inference.restorer.RESTORERS`), which keeps the most recently used ones."""

    def __init__(self, checkpoint: Path | None, allowed: Path | None, precision: str, device: torch.device,
                 arch: str | None = None) -> None:
        self.precision, self.device = precision, device
        self._fixed: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()
        self.allowed = None
        if allowed is not None:
            if not allowed.is_dir():
                raise UserError(f"--allow-checkpoints must name a folder: {allowed}")
            self.allowed = allowed.resolve()
        self.checkpoint = checkpoint
        if checkpoint is not None:  # fully loaded now: a bad file fails the start, not the first request
            try:
                self._fixed["checkpoint"] = self._load(checkpoint, f"checkpoint {checkpoint.name}", arch)
            except UserError:
                raise
            except Exception as err:  # the loader's own errors are UserErrors; anything else is one line too
                reason = " ".join(str(err).split())
                raise UserError(f"cannot load --checkpoint {checkpoint}: {type(err).__name__}: {reason}") from err

    def _load(self, path: Path, label: str, arch: str | None = None) -> LoadedModel:
        restorer = RESTORERS.get(path, arch=arch, precision=self.precision, device=self.device)
        install_stop_checks(restorer.model)
        return LoadedModel(restorer, f"{label} ({restorer.info.summary()})")

    def for_request(self, source: Path, checkpoint_text: str | None) -> LoadedModel:
        """The model named on the page, else the server's, else the default for ``source``'s type."""
        text = (checkpoint_text or "").strip()
        if text:
            return self._page_model(text)
        if self.checkpoint is not None:
            return self._fixed["checkpoint"]
        kind = default_kind(image_suffix(source))
        with self._lock:
            if kind not in self._fixed:
                self._fixed[kind] = self._load(default_checkpoint(kind), f"default {kind} model")
            return self._fixed[kind]

    def _page_model(self, text: str) -> LoadedModel:
        """A checkpoint inside the allowed folder (symlinks resolved), else CHECKPOINT_REFUSED: the same
        message whether the path is outside, missing, unreadable, a folder or not a checkpoint."""
        try:
            if self.allowed is None:
                raise UserError("the page's checkpoint box is off (no --allow-checkpoints)")
            path = self._inside((self.allowed / text).resolve())
            weights = self._inside(resolve_checkpoint(path).resolve())
            return self._load(weights, f"checkpoint {weights.relative_to(self.allowed)}")
        except Exception as err:  # noqa: BLE001 - every refusal is one message; the reason goes to the log
            print(f"exda serve: refused checkpoint {text!r}: {type(err).__name__}: {' '.join(str(err).split())}",
                  file=sys.stderr)
            raise UserError(CHECKPOINT_REFUSED) from None

    def _inside(self, path: Path) -> Path:
        assert self.allowed is not None
        if not path.is_relative_to(self.allowed):
            raise UserError(f"{path} is outside {self.allowed}")
        return path


@dataclass
class Plan:
    """A request checked before it waits: its file, lane and model."""

    source: Path
    lane: Lane
    model: LoadedModel


def _say(message: str) -> None:
    """A note on a restoration (tiles, NaN values) for the server's log."""
    print(f"exda serve: {message}", file=sys.stderr)


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


def _result_name(source: Path, tail: str) -> str:
    """A result's file name from the upload's (shortened: a long upload name must not make it too long)."""
    return image_stem(source)[:NAME_CHARS] + tail


class Pages:
    """The two tabs' functions (plain Python; the Gradio layer only wires them up). Each request is
    checked first (readable, size, model; no waiting), then restored in its lane."""

    def __init__(self, models: Models, lanes: Lanes, folder: WorkFolder, budget: int, max_pixels: int,
                 time_limit: float | None) -> None:
        self.models, self.lanes, self.folder = models, lanes, folder
        self.budget, self.max_pixels, self.time_limit = budget, max_pixels, time_limit

    def _plan(self, source: Path, checkpoint_text: str | None) -> Plan:
        """Refuse a file that is no image or too large from its header (a small one is decoded), pick the
        lane by its size, and the model."""
        try:
            pixels = int(np.prod(load_image(source, max_pixels=self.lanes.fast_pixels).pixels.shape[:2]))
        except TooManyPixels as err:
            pixels = err.height * err.width
            if pixels > self.max_pixels:
                raise UserError(
                    f"{source.name} is {err.width}x{err.height} = {pixels / 1e6:.1f} megapixels, more than this "
                    f"server accepts ({self.max_pixels / 1e6:g} megapixels, exda serve --max-pixels); restore "
                    "it with `exda restore` on your own machine") from None
        return Plan(source, self.lanes.lane_for(pixels), self.models.for_request(source, checkpoint_text))

    async def _run(self, upload: str | None, checkpoint_text: str | None, work, *args) -> Any:
        source = _checked_upload(upload)
        with self.folder.using(source):
            plan = await asyncio.get_running_loop().run_in_executor(None, self._plan, source, checkpoint_text)
            job = Job(self.time_limit)
            return await self.lanes.run(plan.lane, job, lambda: work(plan, job, *args))

    def _restore_file(self, plan: Plan, job: Job, source: Path, out_dir: Path) -> tuple[Path, str]:
        """Restore ``source`` into ``out_dir`` (in a lane); the output file and one line for the page."""
        suffix = image_suffix(source)
        dst = out_dir / _result_name(source, "_restored" + (suffix if suffix in (".tif", ".tiff") else ".png"))
        start = time.perf_counter()
        loaded = plan.model
        tile = loaded.restorer.restore_file(source, dst, overlap=TILE_OVERLAP, budget=self.budget,
                                            max_pixels=self.max_pixels, notify=_say)
        seconds = time.perf_counter() - start
        how = "whole image" if tile is None else f"{tile} px tiles (over --max-memory {format_size(self.budget)})"
        return dst, (f"{seconds:.2f} s on {self.models.device.type}, {how}; {loaded.description}; "
                     f"{plan.lane.name} lane, waited {job.waited:.2f} s")

    async def restore(self, upload: str | None, checkpoint_text: str | None) -> tuple[Any, str, str]:
        """Tab 1: (before/after pair, restored file, info line)."""
        return await self._run(upload, checkpoint_text, self._restore)

    def _restore(self, plan: Plan, job: Job) -> tuple[Any, str, str]:
        image = load_image(plan.source, max_pixels=self.max_pixels)
        check_running_job()
        with self.folder.request_dir() as out_dir:
            restored_path, line = self._restore_file(plan, job, plan.source, out_dir)
        after = load_image(restored_path).pixels
        h, w = image.pixels.shape[:2]
        if image.nonfinite:
            line += f"; {image.nonfinite} NaN/Inf values replaced by the finite minimum or maximum"
        return (preview(image.pixels), preview(after)), str(restored_path), f"{w}x{h} restored in {line}"

    async def degrade_and_restore(
        self, upload: str | None, degradation: str, seed: float, strength: float, checkpoint_text: str | None,
    ) -> tuple[Any, np.ndarray, str, str]:
        """Tab 2: (degraded/restored pair, clean preview, scores as Markdown, restored file). The
        degradation runs on the whole image; the restoration is tiled like tab 1's."""
        if seed is None or int(seed) != seed or seed < 0:
            raise UserError(f"the seed must be a whole number >= 0, got {seed}")
        if degradation not in list_degradations():
            raise UserError(f"unknown degradation {degradation!r}")
        return await self._run(upload, checkpoint_text, self._degrade_and_restore, degradation, int(seed), strength)

    def _degrade_and_restore(self, plan: Plan, job: Job, degradation: str, seed: int, strength: float
                             ) -> tuple[Any, np.ndarray, str, str]:
        clean = load_image(plan.source, max_pixels=self.max_pixels).pixels
        degraded_t, params = DegradationSampler(degradation, seed=seed, strength=strength)(to_tensor(clean)[None])
        check_running_job()
        with self.folder.request_dir() as out_dir:
            degraded_path = out_dir / _result_name(plan.source, f"_{degradation}_seed{seed}.png")
            save_image(degraded_path, degraded_t[0].permute(1, 2, 0).numpy(), bit_depth=16)
            degraded = load_image(degraded_path).pixels
            restored_path, line = self._restore_file(plan, job, degraded_path, out_dir)
        restored = match_channels(load_image(restored_path).pixels, clean.shape[2])
        (p_in, s_in), (p_out, s_out) = _scores(degraded, clean), _scores(restored, clean)
        table = (
            "| vs the clean image | PSNR (dB) | SSIM |\n|---|---:|---:|\n"
            f"| degraded | {p_in:.2f} | {s_in:.4f} |\n| restored | {p_out:.2f} | {s_out:.4f} |\n\n"
            f"Restored in {line}.\n\n`{degradation}` seed {seed}, strength {strength:g}, parameters: "
            f"`{json.dumps(params)}`"
        )
        return (preview(degraded), preview(restored)), preview(clean), table, str(restored_path)


def build_app(pages: Pages, checkpoint_box: bool):
    """The Gradio page: tab 1 restores, tab 2 degrades with a seed, restores and scores. Each tab has a
    Stop button; the checkpoint boxes are shown only when the server allows a checkpoint folder."""
    import gradio as gr

    def shown(fn):
        """One message on the page for whatever fails, without server paths; a traceback only in the log."""
        async def wrapped(*args):
            try:
                return await fn(*args)
            except UserError as err:
                message = pages.folder.public(" ".join(str(err).split()))
                raise gr.Error(message, print_exception=False) from None
            except MemoryError:
                raise gr.Error("not enough memory on the server for this image; try a smaller one",
                               print_exception=False) from None
            except Exception:
                traceback.print_exc()
                raise gr.Error("the restoration failed with an internal error (the server's log has the details)",
                               print_exception=False) from None
        wrapped.__name__ = fn.__name__
        return wrapped

    checkpoint_help = ("checkpoint (optional): a .safetensors file or run folder inside the server's checkpoint "
                       "folder, named relative to it; empty = the server's model")
    run = {"concurrency_limit": MAX_IN_FLIGHT, "concurrency_id": "restore"}  # the lanes do the queueing
    with gr.Blocks(title="exda: all-in-one image restoration") as app:
        gr.Markdown("# exda: all-in-one image restoration\nRuns on this machine; nothing is sent elsewhere. "
                    "The shipped default model is small and CPU-trained: "
                    "see docs/model_card.md for what it can do. Uploads and results are deleted after "
                    f"{RESULT_LIFETIME_S / 60:g} minutes.")
        with gr.Tab("Restore"):
            with gr.Row():
                with gr.Column(scale=1):
                    upload = gr.File(label="image (PNG, JPEG, TIFF, .npy, DICOM, NIfTI)", type="filepath",
                                     elem_id="restore-upload")
                    checkpoint = gr.Textbox(label=checkpoint_help, elem_id="restore-ckpt", visible=checkpoint_box)
                    with gr.Row():
                        button = gr.Button("Restore", variant="primary", elem_id="restore-button")
                        stop = gr.Button("Stop", variant="stop", elem_id="restore-stop")
                    info = gr.Markdown(elem_id="restore-info")
                    download = gr.File(label="restored image, full resolution", elem_id="restore-download")
                with gr.Column(scale=2):
                    slider = gr.ImageSlider(label="input | restored (drag the handle)", type="numpy",
                                            format="png", elem_id="restore-slider")
            event = button.click(shown(pages.restore), [upload, checkpoint], [slider, download, info],
                                 api_name="restore", **run)
            stop.click(None, None, None, cancels=[event])
        with gr.Tab("Degrade and restore"):
            with gr.Row():
                with gr.Column(scale=1):
                    clean_upload = gr.File(label="clean image", type="filepath", elem_id="degrade-upload")
                    names = list(list_degradations())
                    degradation = gr.Dropdown(names, value="underwater" if "underwater" in names else names[0],
                                              label="degradation")
                    seed = gr.Number(value=0, precision=0, label="seed", minimum=0)
                    strength = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="strength (1 = benchmark-typical)")
                    checkpoint2 = gr.Textbox(label=checkpoint_help, visible=checkpoint_box)
                    with gr.Row():
                        button2 = gr.Button("Degrade and restore", variant="primary", elem_id="degrade-button")
                        stop2 = gr.Button("Stop", variant="stop", elem_id="degrade-stop")
                    scores = gr.Markdown(elem_id="degrade-scores")
                    download2 = gr.File(label="restored image, full resolution")
                with gr.Column(scale=2):
                    slider2 = gr.ImageSlider(label="degraded | restored", type="numpy", format="png")
                    clean_view = gr.Image(label="clean", type="numpy", format="png", interactive=False)
            event2 = button2.click(shown(pages.degrade_and_restore),
                                   [clean_upload, degradation, seed, strength, checkpoint2],
                                   [slider2, clean_view, scores, download2], api_name="degrade_and_restore", **run)
            stop2.click(None, None, None, cancels=[event2])
    return app


class Server:
    """One ``exda serve``: its folder, models, lanes, janitor and page. ``close()`` stops the work and
    removes the folder."""

    def __init__(self, options: ServeOptions, parent: Path | None = None) -> None:
        if importlib.util.find_spec("gradio") is None:
            raise UserError("exda serve needs Gradio: pip install 'exda[serve]'")
        self.options = options
        models = Models(options.checkpoint, options.allow_checkpoints, options.precision,
                        inference_device(options.device), options.arch)  # a bad --checkpoint fails here
        self.folder = WorkFolder(parent)
        # Gradio reads its temp dir when it is imported (some of its folders), when components are made
        # (its cache) and at launch (uploads): set before all three.
        self._gradio_temp = os.environ.get("GRADIO_TEMP_DIR")
        os.environ["GRADIO_TEMP_DIR"] = str(self.folder.files)
        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        self.lanes = Lanes()
        self.pages = Pages(models, self.lanes, self.folder, memory_budget(options.max_memory), options.max_pixels,
                           options.time_limit)
        try:
            self.app = build_app(self.pages, checkpoint_box=options.allow_checkpoints is not None)
        except BaseException:
            self._release()
            raise
        self.app.queue(max_size=4 * MAX_IN_FLIGHT)
        self._stop = threading.Event()
        interval = max(1.0, min(60.0, options.result_lifetime / 4))
        self._janitor = threading.Thread(target=self._sweep, args=(interval,), daemon=True, name="exda-serve-sweep")
        self._janitor.start()

    def _sweep(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.folder.sweep(self.options.result_lifetime)

    def launch(self, **kwargs) -> None:
        """Gradio's launch, with uploads bounded by what ``--max-pixels`` can need (float64 RGBA .npy)."""
        self.app.launch(max_file_size=self.options.max_pixels * 4 * 8 + 2**20, footer_links=[], **kwargs)

    def close(self) -> None:
        self._stop.set()
        self.app.close(verbose=False)
        self._release()

    def _release(self) -> None:
        self.lanes.close()
        self.folder.remove()
        if self._gradio_temp is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = self._gradio_temp
