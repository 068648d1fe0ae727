"""JPEG compression artefacts from a real encoder (Pillow / libjpeg)."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from exda.degradations.base import Degradation, Params, Stage
from exda.degradations.ops import uniform
from exda.degradations.registry import register


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode an H x W (x 3) uint8 array as JPEG at ``quality`` and decode it again."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded)


class JpegCompression(Degradation):
    """Re-encode each image as JPEG (8-bit, Pillow's default 4:2:0 chroma subsampling for colour).

    Quality is 100 - strength * U(60, 90): 10..40 at strength 1, the usual deblocking benchmark range.
    """

    def __init__(self) -> None:
        super().__init__("jpeg", "JPEG re-encoding with Pillow, quality 10..40 at strength 1",
                         task="dejpeg", stage=Stage.COMPRESSION)

    def draw(self, x: Tensor, generator: torch.Generator, strength: float) -> Params:
        return {"quality": int(min(100, max(1, round(100 - strength * uniform(generator, 60.0, 90.0)))))}

    def forward(self, x: Tensor, *, quality: int) -> Tensor:
        ints = torch.round(x.clamp(0.0, 1.0) * 255.0).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        if ints.shape[-1] == 1:
            ints = ints[..., 0]
        decoded = np.stack([jpeg_roundtrip(image, int(quality)) for image in ints])
        out = torch.from_numpy(decoded).to(x.device, torch.float32) / 255.0
        return out.unsqueeze(1) if out.ndim == 3 else out.permute(0, 3, 1, 2)


register(JpegCompression())
