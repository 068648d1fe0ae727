"""Training losses: a pixel term (L1 or Charbonnier) plus an optional FFT-amplitude term (MoCE-IR)."""

from __future__ import annotations

import torch
from torch import nn

from exda.engine.config import LossConfig


def charbonnier_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Mean of sqrt((pred - target)^2 + eps^2): a smooth L1, as in Restormer's deraining setup."""
    return torch.sqrt((pred - target).square() + eps * eps).mean()


def fft_amplitude_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the amplitude spectra ``|rfft2(pred)|`` and ``|rfft2(target)|`` (computed in fp32)."""
    return (torch.fft.rfft2(pred.float()).abs() - torch.fft.rfft2(target.float()).abs()).abs().mean()


class RestorationLoss(nn.Module):
    """``pixel(pred, target) + fft_weight * fft_amplitude(pred, target)``."""

    def __init__(self, kind: str = "l1", fft_weight: float = 0.0) -> None:
        super().__init__()
        if kind not in ("l1", "charbonnier"):
            raise ValueError(f"unknown loss kind {kind!r}")
        self.kind = kind
        self.fft_weight = fft_weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred, target = pred.float(), target.float()
        if self.kind == "l1":
            loss = nn.functional.l1_loss(pred, target)
        else:
            loss = charbonnier_loss(pred, target)
        if self.fft_weight:
            loss = loss + self.fft_weight * fft_amplitude_loss(pred, target)
        return loss


def build_loss(config: LossConfig) -> RestorationLoss:
    """The loss a config section describes."""
    return RestorationLoss(config.kind, config.fft_weight)
