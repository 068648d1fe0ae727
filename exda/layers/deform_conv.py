"""Modulated deformable convolution (DCN v2, Zhu et al., CVPR 2019) in plain PyTorch.

Kernel tap k of output pixel p reads the input at ``p * stride - padding + k * dilation + offset_k(p)``
by bilinear interpolation (zero outside the image), scales the sample by a mask ``m_k(p)`` and the
samples are contracted with the weight as in an ordinary convolution. Offsets are (dy, dx) pairs per
tap, taps in row-major kernel order, one set per deformable group: the layout of mmcv's
``modulated_deform_conv2d``, which AirNet calls. Written with ``grid_sample`` and one matmul, so it runs
on any device and dtype (float64 included) without a compiled extension.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair
from torch.utils.checkpoint import checkpoint


def modulated_deform_conv2d(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    deformable_groups: int = 1,
) -> torch.Tensor:
    """DCN v2 on B x C x H x W with ``offset`` B x 2*G*K x Ho x Wo, ``mask`` B x G*K x Ho x Wo (K taps,
    G deformable groups) and ``weight`` O x C/groups x kh x kw: B x O x Ho x Wo. The arguments are
    those of mmcv's ``modulated_deform_conv2d``, in its order.

    When a gradient is needed the sampled columns (C * K values per output pixel) are recomputed in the
    backward pass rather than stored, as mmcv's kernels do, so training memory stays near a convolution's.
    """
    b, c, h, w = x.shape
    out_channels, in_channels, kh, kw = weight.shape
    if in_channels * groups != c or out_channels % groups:
        raise ValueError(f"weight {tuple(weight.shape)} with {groups} groups does not fit {c} input channels")
    if c % deformable_groups:
        raise ValueError(f"{c} channels are not divisible by {deformable_groups} deformable groups")
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    g, taps = deformable_groups, kh * kw
    if offset.shape != (b, 2 * g * taps, ho, wo) or mask.shape != (b, g * taps, ho, wo):
        raise ValueError(f"offset {tuple(offset.shape)} / mask {tuple(mask.shape)} do not fit a "
                         f"{kh}x{kw} kernel with {g} deformable groups and a {ho}x{wo} output")
    geometry = (sh, sw, ph, pw, dh, dw, groups, deformable_groups)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, offset, mask, weight)):
        out = checkpoint(_deform_conv, x, offset, mask, weight, geometry, use_reentrant=False)
    else:
        out = _deform_conv(x, offset, mask, weight, geometry)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def _deform_conv(
    x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor, geometry: tuple[int, ...]
) -> torch.Tensor:
    """Sample every tap with ``grid_sample`` (bilinear, zero outside: mmcv's rule, as each of the four
    neighbours outside the image counts as zero), modulate, and contract with the weight (one matmul)."""
    sh, sw, ph, pw, dh, dw, groups, g = geometry
    b, c, h, w = x.shape
    out_channels, in_channels, kh, kw = weight.shape
    taps, (ho, wo) = kh * kw, offset.shape[-2:]
    offset = offset.reshape(b * g, taps, 2, ho, wo)
    kernel_y = (torch.arange(kh, device=x.device, dtype=x.dtype) * dh).repeat_interleave(kw).view(taps, 1, 1)
    kernel_x = (torch.arange(kw, device=x.device, dtype=x.dtype) * dw).repeat(kh).view(taps, 1, 1)
    rows = (torch.arange(ho, device=x.device, dtype=x.dtype) * sh - ph).view(1, ho, 1) + kernel_y
    cols = (torch.arange(wo, device=x.device, dtype=x.dtype) * sw - pw).view(1, 1, wo) + kernel_x
    y, x_pos = rows + offset[:, :, 0], cols + offset[:, :, 1]  # pixel positions, (B*G) x K x Ho x Wo
    # grid_sample's coordinates (align_corners=False): pixel i of n sits at (2 i + 1) / n - 1
    grid = torch.stack([(2 * x_pos + 1) / w - 1, (2 * y + 1) / h - 1], dim=-1).view(b * g, taps * ho, wo, 2)
    sampled = F.grid_sample(x.reshape(b * g, c // g, h, w), grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)
    columns = sampled.view(b * g, c // g, taps, ho * wo) * mask.reshape(b * g, 1, taps, ho * wo)
    columns = columns.reshape(b, groups, in_channels * taps, ho * wo)
    out = weight.reshape(groups, out_channels // groups, in_channels * taps) @ columns
    return out.reshape(b, out_channels, ho, wo)


class ModulatedDeformConv2d(nn.Module):
    """The weight (and optional bias) of a DCN v2 layer; offsets and masks come from the caller."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        deformable_groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.deformable_groups = deformable_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        bound = 1 / math.sqrt(in_channels * kernel_size * kernel_size)  # mmcv's / AirNet's init
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return modulated_deform_conv2d(x, offset, mask, self.weight, self.bias, self.stride, self.padding,
                                       self.dilation, 1, self.deformable_groups)
