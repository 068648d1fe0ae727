"""``exda.restore(image)``: one call from Python, with ``exda restore``'s model choice, memory budget and tiling.

    import exda
    clean = exda.restore("photo.jpg")                       # the shipped default model; a uint8 array back
    clean = exda.restore(array_uint8)                       # H x W x 3 uint8 in, the same shape and type out
    clean = exda.restore(tensor, checkpoint="runs/tiny_deg3")  # B x C x H x W or C x H x W in [0, 1]

The output has the input's shape, dtype and range: uint8 in, uint8 out; uint16 in, uint16 out; float in
[0, 1] in, float clamped to [0, 1] out (the networks' own output overshoots [0, 1] slightly; it is clamped
here, not inside them). A path gives the file's pixels as a NumPy array of its bit depth (gray as H x W,
alpha put back as the last channel). Each checkpoint is loaded once per process (the cache ``exda serve``
uses too) and runs on the fast inference path (:func:`exda.optimize_for_inference`).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from exda.data.io import image_suffix
from exda.inference.pretrained import default_checkpoint, default_kind
from exda.inference.restorer import RESTORERS, Image, check_tiling, memory_budget


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

    ``checkpoint``: an exda checkpoint, run folder or published ``.pth`` / ``.ckpt`` (as ``--checkpoint``);
    without it the shipped default model, ``model`` = ``photo``, ``medical`` or ``auto`` (medical for DICOM /
    NIfTI paths). ``max_memory`` (e.g. ``"2G"``; default a quarter of the available memory, at most 2 GiB),
    ``tile``, ``tile_overlap``, ``precision`` and ``device`` mean what they mean for ``exda restore``.
    """
    check_tiling(tile, tile_overlap)
    budget = memory_budget(max_memory)
    is_path = isinstance(image, (str, os.PathLike))
    kind = model if model != "auto" else default_kind(image_suffix(image)) if is_path else "photo"
    if checkpoint is None:
        checkpoint = default_checkpoint(kind)
    restorer = RESTORERS.get(checkpoint, precision=precision, device=device)
    return restorer.restore(image, tile=tile, overlap=tile_overlap, budget=budget)
