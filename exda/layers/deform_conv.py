"""Modulated deformable convolution (DCN v2, Zhu et al., CVPR 2019) in plain PyTorch.

Kernel tap k of output pixel p reads the input at ``p * stride - padding + k * dilation + offset_k(p)``
by bilinear interpolation (zero outside the image), scales the sample by a mask ``m_k(p)`` and the
samples are contracted with the weight as in an ordinary convolution. Offsets are (dy, dx) pairs per
tap, taps in row-major kernel order, one set per deformable group: the layout of mmcv's
``modulated_deform_conv2d``, which AirNet calls. Written with gathers, so it runs on any device and
dtype (float64 included) without a compiled extension.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.modules.utils import _pair


def bilinear_sample(x: torch.Tensor, y: torch.Tensor, x_pos: torch.Tensor) -> torch.Tensor:
    """Sample N x C x H x W at real positions (N x P rows ``y``, columns ``x_pos``): N x C x P.

    Each of the four neighbours outside the image counts as zero, as in mmcv's DCN kernels, so a
    position at or beyond one pixel outside the image gives exactly zero.
    """
    n, c, h, w = x.shape
    y0, x0 = y.floor(), x_pos.floor()
    ly, lx = y - y0, x_pos - x0
    y0, x0 = y0.long(), x0.long()
    flat = x.reshape(n, c, h * w)
    out = x.new_zeros(n, c, y.shape[1])
    for dy, wy in ((0, 1 - ly), (1, ly)):
        for dx, wx in ((0, 1 - lx), (1, lx)):
            rows, cols = y0 + dy, x0 + dx
            inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
            index = rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)
            values = flat.gather(2, index.unsqueeze(1).expand(n, c, -1))
            out = out + values * (wy * wx * inside).unsqueeze(1)
    return out


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
    those of mmcv's ``modulated_deform_conv2d``, in its order."""
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
    offset = offset.reshape(b * g, taps, 2, ho * wo)
    mask = mask.reshape(b * g, taps, ho * wo)
    base_y = (torch.arange(ho, device=x.device, dtype=x.dtype) * sh - ph).repeat_interleave(wo)
    base_x = (torch.arange(wo, device=x.device, dtype=x.dtype) * sw - pw).repeat(ho)
    grouped = x.reshape(b * g, c // g, h, w)
    weight = weight.reshape(groups, out_channels // groups, in_channels, taps)
    out = None
    for tap in range(taps):
        i, j = divmod(tap, kw)
        y = base_y + i * dh + offset[:, tap, 0]
        x_pos = base_x + j * dw + offset[:, tap, 1]
        sampled = bilinear_sample(grouped, y, x_pos) * mask[:, tap].unsqueeze(1)
        term = torch.einsum("goc,bgcp->bgop", weight[..., tap], sampled.reshape(b, groups, in_channels, ho * wo))
        out = term if out is None else out + term
    out = out.reshape(b, out_channels, ho * wo)
    if bias is not None:
        out = out + bias.view(1, -1, 1)
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
