"""What the analyses share: the degraded probe set, checkpoint loading, atomic JSON and figure output."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from exda.atomic import atomic_write
from exda.data.io import to_tensor
from exda.data.samples import load_sample, sample_names
from exda.degradations import DegradationSampler, list_degradations
from exda.engine.evaluate import finite_or_none
from exda.errors import UserError
from exda.inference.loader import load_network
from exda.inference.pretrained import default_checkpoint
from exda.layers import GlobalSpatialToken, NonlinearValue, TokenOptions

DEFAULT_DEGRADATIONS: tuple[str, ...] = ("noise", "rain", "haze", "snow", "low_light", "motion_blur", "jpeg")


@dataclass
class ProbeSet:
    """Clean crops, their degraded versions and the degradation label of each (N x 3 x S x S in [0, 1])."""

    clean: torch.Tensor
    degraded: torch.Tensor
    labels: list[str]
    degradations: tuple[str, ...]


def probe_set(degradations: tuple[str, ...] = DEFAULT_DEGRADATIONS, crop: int = 96, per_photo: int = 2,
              seed: int = 0, photos: tuple[str, ...] | None = None) -> ProbeSet:
    """Every natural sample photo, ``per_photo`` seeded random crops each, under every degradation."""
    known = list_degradations()
    for name in degradations:
        if name not in known:
            raise UserError(f"unknown degradation '{name}' (see exda degrade --list)")
    if crop < 32 or per_photo < 1:
        raise UserError(f"--crop must be >= 32 and --per-photo >= 1, got {crop} and {per_photo}")
    rng = np.random.default_rng(seed)
    crops = []
    for name in photos or tuple(sample_names("all")):
        img = load_sample(name).astype(np.float32)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        img = img[..., :3]
        h, w = img.shape[:2]
        if min(h, w) < crop:
            continue
        for _ in range(per_photo):
            y, x = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
            crops.append(to_tensor(np.ascontiguousarray(img[y:y + crop, x:x + crop])))
    if not crops:
        raise UserError(f"no sample photo is at least {crop} px a side")
    clean_one = torch.stack(crops).clamp(0, 1)
    clean, degraded, labels = [], [], []
    for k, name in enumerate(degradations):
        sampler = DegradationSampler(name, seed=seed * 1000 + k)
        for i in range(len(clean_one)):
            y, _ = sampler(clean_one[i:i + 1])
            clean.append(clean_one[i])
            degraded.append(y[0].clamp(0, 1).float())
            labels.append(name)
    return ProbeSet(torch.stack(clean), torch.stack(degraded), labels, tuple(degradations))


def load_model(path: Path | None, arch: str | None = None) -> tuple[nn.Module, str]:
    """A checkpoint of any kind (or, for None, the shipped photo model) in eval mode on the CPU, and its label;
    ``arch`` as ``--arch``."""
    model, info = load_network(default_checkpoint("photo") if path is None else path, arch=arch, device="cpu")
    return model, f"{info.arch}{_options_label(model)} ({info.path.name})"


def _options_label(model: nn.Module) -> str:
    """The primitives as built in ``model``, short: " vt=off gt=row softmax=raw" (token options only where
    they differ from the defaults, :class:`TokenOptions`)."""
    value = next((m.kind for m in model.modules() if isinstance(m, NonlinearValue)), "off")
    token = next((m for m in model.modules() if isinstance(m, GlobalSpatialToken)), None)
    parts = [f"vt={value}", f"gt={token.kind if token else 'off'}"]
    if token is not None:
        defaults = asdict(TokenOptions())
        for name, option in asdict(token.options).items():
            if option != defaults[name] and (name != "column_scale" or token.kind == "columns"):
                parts.append(f"{name}={option}")
    return "".join(f" {part}" for part in parts)


@torch.inference_mode()
def restore_all(model: nn.Module, images: torch.Tensor, batch: int = 8) -> torch.Tensor:
    return torch.cat([model(images[i:i + batch]).clamp(0, 1) for i in range(0, len(images), batch)])


def write_json(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(finite_or_none(record), indent=2) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


def save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png"))
    plt.close(fig)
