"""A network loaded once and ready to restore: :class:`Restorer`, and the process's cache of them.

One :class:`Restorer` serves ``exda restore``, ``exda serve`` and :func:`exda.restore` alike (as pyiqa's
``InferenceModel`` serves its command line, Python API and tests): the checkpoint is loaded by
:func:`exda.inference.loader.load_network`, put on the fast inference path or an ONNX backend, and then
restores tensors, NumPy arrays and image files with the same memory rule: a whole-image pass when its
estimated peak fits the budget, tiles otherwise (:mod:`exda.inference.memory`). :data:`RESTORERS` keeps
the most recently used restorers of this process, so each checkpoint is loaded once per process.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from exda.data.io import DEFAULT_MAX_PIXELS, image_suffix, load_image, save_image, to_numpy, to_tensor
from exda.data.transforms import BT601_LUMA, match_channels
from exda.errors import UserError
from exda.inference.backends import build_backend
from exda.inference.checkpoint_format import resolve_checkpoint
from exda.inference.compiled import CompiledInference, CompileMode
from exda.inference.fast import optimize_for_inference
from exda.inference.loader import CheckpointInfo, load_network
from exda.inference.memory import (
    default_budget,
    estimate_peak_bytes,
    first_width,
    format_size,
    parse_size,
    tile_for_budget,
)
from exda.inference.tiling import pass_plan, restore

Image = str | os.PathLike | np.ndarray | torch.Tensor
Notify = Callable[[str], None]
CACHE_SIZE = 4  # restorers a process keeps loaded (least recently used dropped)
_INTEGER_MAX = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}


def inference_device(name: str | torch.device | None) -> torch.device:
    """The requested device, or CUDA when available; asking for absent CUDA is a user error."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda requested but no CUDA device is available")
    return device


def check_tiling(tile: int | None, overlap: int) -> None:
    """One clear line for tile/overlap values the tiler cannot use."""
    if overlap < 0:
        raise UserError(f"--tile-overlap must be >= 0, got {overlap}")
    if tile is not None and (tile < 1 or 2 * overlap > tile):
        raise UserError(f"--tile must be positive and at least twice the overlap ({overlap}), got {tile}")


def memory_budget(text: str | None) -> int:
    """--max-memory in bytes (its default when None); one clear line for a malformed size."""
    if text is None:
        return default_budget()
    try:
        return parse_size(text)
    except ValueError:
        raise UserError(f"--max-memory must be a size like 2G, 512M or 3.5GiB, got {text!r}") from None


class BackendModel(nn.Module):
    """An ONNX Runtime / OpenVINO restorer behind the nn.Module call the tiler uses (no parameters)."""

    def __init__(self, restorer) -> None:
        super().__init__()
        self.restorer = restorer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.restorer(x)


def inference_model(net: nn.Module, backend: str, precision: str, compile: CompileMode = "off") -> nn.Module:
    """``net`` on the fast PyTorch path (with cached AOTInductor artefacts unless ``compile="off"``, CPU
    only), or exported to ``backend``; fp32 tensors in and out."""
    fast = optimize_for_inference(net, precision=precision)
    if backend == "torch":
        on_cpu = next(net.parameters()).device.type == "cpu"
        return CompiledInference(fast, compile) if compile != "off" and on_cpu else fast
    return BackendModel(build_backend(backend, net, bf16=fast.bf16 and backend == "openvino"))


class Restorer:
    """A checkpoint's network, loaded once, and the ways to restore with it.

    ``network``: the eager network (fp32, eval mode); ``model``: what runs it (the fast path, or an ONNX
    backend), fp32 B x C x H x W in [0, 1] in and out; ``info``: what was loaded. Every ``restore*`` method
    takes ``tile`` (None: whole image when it fits ``budget``), ``overlap`` and ``budget`` (bytes; None: a
    quarter of the available memory, at most 2 GiB), as ``exda restore``'s ``--tile``, ``--tile-overlap`` and
    ``--max-memory``. ``compile``: whether the PyTorch backend uses compiled artefacts
    (:class:`~exda.inference.compiled.CompiledInference`; ``exda restore --compile``).
    """

    def __init__(self, network: nn.Module, info: CheckpointInfo, *, backend: str = "torch",
                 precision: str = "auto", compile: CompileMode = "off") -> None:
        self.network, self.info = network, info
        self.model = inference_model(network, backend, precision, compile)
        self.width = first_width(network)  # full-resolution feature width, for the memory estimate

    @classmethod
    def load(cls, checkpoint: str | Path, *, arch: str | None = None, use_ema: bool = True, backend: str = "torch",
             precision: str = "auto", device: str | torch.device | None = None,
             compile: CompileMode = "off") -> Restorer:
        """Load ``checkpoint`` (any kind :func:`~exda.inference.loader.load_network` reads) onto ``device``
        (default: CUDA when available, else the CPU)."""
        network, info = load_network(checkpoint, arch=arch, use_ema=use_ema, device=inference_device(device))
        return cls(network, info, backend=backend, precision=precision, compile=compile)

    def describe_path(self) -> str:
        """One line naming the inference path the last restore used."""
        if isinstance(self.model, CompiledInference):
            return self.model.describe()
        if isinstance(self.model, BackendModel):
            return "ONNX backend"
        return f"fast eager path ({'bf16' if self.model.bf16 else 'fp32'}, channels-last)"

    def run(self, x: torch.Tensor, *, tile: int | None = None, overlap: int = 32, budget: int | None = None,
            progress: bool = False, name: str = "the image", notify: Notify | None = None
            ) -> tuple[torch.Tensor, int | None]:
        """Restore one 1 x C x H x W image in [0, 1] (C: the model's channels), tiled when ``tile`` is set or
        when a whole pass would exceed ``budget`` (``notify`` gets one line saying so); returns the output
        clamped to [0, 1] (the networks' own output overshoots slightly) and the tile size used (None: whole
        image)."""
        budget = default_budget() if budget is None else budget
        h, w = x.shape[-2:]
        if tile is None and (tile := tile_for_budget(self.width, h, w, budget)) is not None:
            overlap = min(overlap, tile // 2)  # a --tile-overlap meant for larger tiles must not break these
            if notify is not None:
                need = format_size(estimate_peak_bytes(self.width, h, w))
                notify(f"{name} ({w}x{h}) would need about {need} in one pass, more than --max-memory "
                       f"{format_size(budget)}; restoring in {tile} px tiles")
        if isinstance(self.model, CompiledInference):
            self.model.expect(*pass_plan(tuple(x.shape), tile=tile, overlap=overlap))
        return restore(self.model, x, tile=tile, overlap=overlap, progress=progress).clamp(0, 1), tile

    def restore_file(self, src: Path, dst: Path, *, tile: int | None = None, overlap: int = 32,
                     budget: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS, quality: int = 95,
                     notify: Notify | None = None) -> int | None:
        """Load, restore and save one image, keeping its bit depth and alpha (``notify`` gets a line for
        whatever the file loses or gains on the way). Returns the tile size used (None: whole image)."""
        say = notify or (lambda message: None)
        image = load_image(src, max_pixels=max_pixels)
        if image.nonfinite:
            say(f"{src.name} holds {image.nonfinite} NaN/Inf values; restored with them replaced by the finite "
                "minimum (NaN, -Inf) or maximum (+Inf)")
        if image.alpha is not None and image_suffix(dst) in (".jpg", ".jpeg"):
            say(f"{src.name} has an alpha channel, which JPEG cannot store; {dst.name} drops it")
        channels, in_channels = image.pixels.shape[2], self.info.in_channels
        if channels == 3 and in_channels == 1:
            say(f"{src.name} is RGB but the model takes 1 channel; restoring its luma")
        x = to_tensor(match_channels(image.pixels, in_channels)).unsqueeze(0)
        out, tile = self.run(x, tile=tile, overlap=overlap, budget=budget, progress=True, name=src.name,
                             notify=notify)
        restored = to_numpy(out[0])
        if channels == 1 and in_channels == 3:  # gray in, gray out
            restored = match_channels(restored, 1)
        try:
            save_image(dst, restored, bit_depth=image.bit_depth, alpha=image.alpha, quality=quality)
        except OSError as err:  # full disk, quota, a folder that became read-only: the temp file is gone
            raise UserError(f"cannot write {dst}: {err.strerror or err}") from err
        return tile

    def restore(self, image: Image, *, tile: int | None = None, overlap: int = 32, budget: int | None = None
                ) -> np.ndarray | torch.Tensor:
        """Restore a path, an array or a tensor, as :func:`exda.restore` describes; the output has the
        input's shape, dtype and range."""

        def run(x: torch.Tensor) -> torch.Tensor:  # 1 x C x H x W float in [0, 1] -> the same, restored
            fitted = _fit_channels(x, self.info.in_channels)
            out, _ = self.run(fitted, tile=tile, overlap=overlap, budget=budget)
            return _fit_channels(out, x.shape[1])

        if isinstance(image, (str, os.PathLike)):
            loaded = load_image(image)
            pixels = run(_as_batch(loaded.pixels))[0].permute(1, 2, 0).numpy()
            if loaded.alpha is not None:
                pixels = np.concatenate([pixels, loaded.alpha[:, :, None]], axis=2)
            dtype = np.uint8 if loaded.bit_depth == 8 else np.uint16
            return _from_unit(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels, np.dtype(dtype))
        if isinstance(image, np.ndarray):
            return _restore_array(image, run)
        if isinstance(image, torch.Tensor):
            return _restore_tensor(image, run)
        raise TypeError(f"exda.restore takes a path, a NumPy array or a torch tensor, not {type(image).__name__}")


class RestorerCache:
    """Restorers by checkpoint file (and its version), arch, backend, precision and device, each loaded on
    first use; the ``size`` most recently used are kept. Safe to share between threads."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._loaded: OrderedDict[tuple, Restorer] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, checkpoint: str | Path, *, arch: str | None = None, backend: str = "torch",
            precision: str = "auto", device: str | torch.device | None = None,
            compile: CompileMode = "off") -> Restorer:
        path = resolve_checkpoint(checkpoint)
        stat = path.stat()
        device = inference_device(device)
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, arch, backend, precision, str(device), compile)
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = Restorer.load(path, arch=arch, backend=backend, precision=precision,
                                                  device=device, compile=compile)
                while len(self._loaded) > self.size:
                    self._loaded.popitem(last=False)
            self._loaded.move_to_end(key)
            return self._loaded[key]

    def __len__(self) -> int:
        return len(self._loaded)


RESTORERS = RestorerCache()  # the process's one cache: exda restore, exda serve and exda.restore share it


def _fit_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Gray -> RGB by repeating, RGB -> gray by BT.601 luma (as ``exda restore``)."""
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 1 and channels == 3:
        return x.repeat(1, 3, 1, 1)
    if x.shape[1] == 3 and channels == 1:
        return (x * torch.from_numpy(BT601_LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    raise ValueError(f"the image has {x.shape[1]} channels; the model takes {channels} (1 or 3 work)")


def _as_batch(pixels: np.ndarray) -> torch.Tensor:
    """H x W x C float32 in [0, 1] -> 1 x C x H x W."""
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32)).unsqueeze(0)


def _to_unit(array: np.ndarray) -> np.ndarray:
    """Any supported dtype -> float32 in [0, 1]; floats must already lie there."""
    if array.dtype in _INTEGER_MAX:
        return array.astype(np.float32) / _INTEGER_MAX[array.dtype]
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"pixels of type {array.dtype} are not supported: pass uint8, uint16 or float in [0, 1]")
    if array.size and not (np.isfinite(array).all() and array.min() >= 0 and array.max() <= 1):
        low, high = np.nanmin(array), np.nanmax(array)
        raise ValueError(f"float pixels must be finite and in [0, 1], got {low:g} .. {high:g}; scale them (or pass "
                         "uint8 / uint16)")
    return array.astype(np.float32)


def _from_unit(pixels: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float in [0, 1] -> ``dtype``: integers rounded to their full range, floats clamped to [0, 1]."""
    pixels = np.clip(pixels, 0.0, 1.0)
    if dtype in _INTEGER_MAX:
        return np.rint(pixels * _INTEGER_MAX[dtype]).astype(dtype)
    return pixels.astype(dtype)


def _restore_array(array: np.ndarray, run) -> np.ndarray:
    if array.ndim == 2:
        color, alpha = array[:, :, None], None
    elif array.ndim == 3 and array.shape[2] in (1, 3):
        color, alpha = array, None
    elif array.ndim == 3 and array.shape[2] in (2, 4):
        color, alpha = array[:, :, :-1], array[:, :, -1:]
    else:
        raise ValueError(f"expected an H x W or H x W x C image (C = 1, 2, 3 or 4), got shape {array.shape}")
    restored = _from_unit(run(_as_batch(_to_unit(color)))[0].permute(1, 2, 0).numpy(), array.dtype)
    if alpha is not None:
        restored = np.concatenate([restored, alpha], axis=2)
    return restored.reshape(array.shape)


def _restore_tensor(tensor: torch.Tensor, run) -> torch.Tensor:
    if tensor.ndim not in (3, 4):
        raise ValueError(f"expected a C x H x W or B x C x H x W tensor, got shape {tuple(tensor.shape)}")
    batch = tensor if tensor.ndim == 4 else tensor.unsqueeze(0)
    if tensor.dtype == torch.uint8:
        unit = batch.float() / 255
    elif tensor.is_floating_point():
        unit = batch.detach().float()
        if unit.numel() and not (torch.isfinite(unit).all() and unit.min() >= 0 and unit.max() <= 1):
            raise ValueError("float pixels must be finite and in [0, 1]; scale them (or pass uint8)")
    else:
        raise TypeError(f"tensors of type {tensor.dtype} are not supported: pass uint8 or float in [0, 1]")
    out = torch.cat([run(item.unsqueeze(0).cpu()) for item in unit])  # one image at a time: the memory budget
    out = (out * 255).round().to(torch.uint8) if tensor.dtype == torch.uint8 else out.to(tensor.dtype)
    return out.reshape(tensor.shape).to(tensor.device)
