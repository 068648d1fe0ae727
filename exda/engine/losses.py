"""Training losses: a pixel term (L1 or Charbonnier) plus optional FFT-amplitude (MoCE-IR) and Pearson
correlation (Histoformer) terms."""

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


def pearson_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Histoformer's correlation loss: (1 - r) / 2 per image, r the Pearson correlation of all its values
    (``eps`` added to the product of the norms, as there), averaged over the images whose r is finite."""
    p, t = pred.float().flatten(1), target.float().flatten(1)
    p, t = p - p.mean(dim=1, keepdim=True), t - t.mean(dim=1, keepdim=True)
    r = (p * t).sum(dim=1) / (torch.linalg.vector_norm(p, dim=1) * torch.linalg.vector_norm(t, dim=1) + eps)
    loss = (1 - r) / 2
    return loss[torch.isfinite(loss)].mean()


class RestorationLoss(nn.Module):
    """``pixel + fft_weight * fft_amplitude + pearson_weight * pearson`` of (pred, target)."""

    def __init__(self, kind: str = "l1", fft_weight: float = 0.0, pearson_weight: float = 0.0) -> None:
        super().__init__()
        if kind not in ("l1", "charbonnier"):
            raise ValueError(f"unknown loss kind {kind!r}")
        self.kind = kind
        self.fft_weight = fft_weight
        self.pearson_weight = pearson_weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred, target = pred.float(), target.float()
        if self.kind == "l1":
            loss = nn.functional.l1_loss(pred, target)
        else:
            loss = charbonnier_loss(pred, target)
        if self.fft_weight:
            loss = loss + self.fft_weight * fft_amplitude_loss(pred, target)
        if self.pearson_weight:
            loss = loss + self.pearson_weight * pearson_loss(pred, target)
        return loss


def build_loss(config: LossConfig) -> RestorationLoss:
    """The loss a config section describes."""
    return RestorationLoss(config.kind, config.fft_weight, config.pearson_weight)
