"""``exda.restore(image)``: one call from Python, with ``exda restore``'s model choice, memory budget and tiling.

    import exda
    clean = exda.restore("photo.jpg")                       # the shipped default model; a uint8 array back
    clean = exda.restore(array_uint8)                       # H x W x 3 uint8 in, the same shape and type out
    clean = exda.restore(tensor, checkpoint="runs/tiny_deg3")  # B x C x H x W or C x H x W in [0, 1]

The output has the input's shape, dtype and range: uint8 in, uint8 out; uint16 in, uint16 out; float in
[0, 1] in, float clamped to [0, 1] out (the networks' own output overshoots [0, 1] slightly; it is clamped
here, not inside them). A path gives the file's pixels as a NumPy array of its bit depth (gray as H x W,
alpha put back as the last channel). Each checkpoint is loaded once per process and runs on the fast
inference path (:func:`exda.optimize_for_inference`).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from exda.data.transforms import BT601_LUMA

Image = str | os.PathLike | np.ndarray | torch.Tensor
_INTEGER_MAX = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}


def restore(
    image: Image,
    *,
    checkpoint: str | os.PathLike | None = None,
    model: str = "auto",
    max_memory: str | None = None,
    tile: int | None = None,
    tile_overlap: int = 32,
    precision: str = "auto",
    device: str | None = None,
) -> np.ndarray | torch.Tensor:
    """Restore ``image``: a path, an H x W [x C] NumPy array (uint8, uint16 or float in [0, 1]; C = 1, 3, or
    2 / 4 with alpha), or a C x H x W / B x C x H x W tensor (float in [0, 1], or uint8).

    ``checkpoint``: an exda checkpoint, run folder or published ``.pth`` (as ``--checkpoint``); without it
    the shipped default model, ``model`` = ``photo``, ``medical`` or ``auto`` (medical for DICOM / NIfTI
    paths). ``max_memory`` (e.g. ``"2G"``; default a quarter of the available memory, at most 2 GiB),
    ``tile``, ``tile_overlap``, ``precision`` and ``device`` mean what they mean for ``exda restore``.
    """
    from exda.data.io import image_suffix, load_image
    from exda.inference.memory import first_width
    from exda.inference.pretrained import default_checkpoint, default_kind
    from exda.inference.restore_cli import check_tiling, inference_device, memory_budget, restore_image

    check_tiling(tile, tile_overlap)
    budget = memory_budget(max_memory)
    is_path = isinstance(image, (str, os.PathLike))
    kind = model if model != "auto" else default_kind(image_suffix(image)) if is_path else "photo"
    if checkpoint is None:
        checkpoint = default_checkpoint(kind)
    fast, net = _load(Path(checkpoint), precision, str(inference_device(device)))

    def run(x: torch.Tensor) -> torch.Tensor:  # 1 x C x H x W float in [0, 1] -> the same, restored
        fitted = _fit_channels(x, net.in_channels)
        out, _ = restore_image(fast, fitted, tile=tile, overlap=tile_overlap, budget=budget, width=first_width(net))
        return _fit_channels(out, x.shape[1])

    if is_path:
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


@functools.lru_cache(maxsize=4)
def _cached(path: str, mtime_ns: int, precision: str, device: str) -> tuple[nn.Module, nn.Module]:
    from exda.engine.checkpoint import load_checkpoint_or_pretrained
    from exda.inference.restore_cli import inference_model

    net, _ = load_checkpoint_or_pretrained(path, device=device)
    return inference_model(net, "torch", precision), net


def _load(checkpoint: Path, precision: str, device: str) -> tuple[nn.Module, nn.Module]:
    """(fast model, network) of a checkpoint, loaded once per file version."""
    from exda.engine.checkpoint import resolve_checkpoint

    path = resolve_checkpoint(checkpoint)
    return _cached(str(path.resolve()), path.stat().st_mtime_ns, precision, device)


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
