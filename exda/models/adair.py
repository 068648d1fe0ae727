"""AdaIR (Cui et al., ICLR 2025): adaptive all-in-one restoration via frequency mining and modulation.

    image -> PatchEmbed -> [Encoder_l -> Down] x3 -> Latent -> AFLB_3 -> [Up -> concat skip -> reduce ->
    Decoder_l -> AFLB_l] (levels 3, 2) -> Up -> concat skip -> Decoder_1 -> Refinement -> 3x3 conv -> + image

The U-Net is Restormer's (MDTA + GDFN, with-bias layer norms). Each adaptive frequency learning block
(AFLB, ``FrequencyModulation``) mines the resized input image: a 3x3 conv, an FFT split into a centred
low-frequency box (its half-size predicted from the features, 0 below 128 px of feature side) and the
rest, channel cross-attention of each band with the decoder features, the frequency modulation module
(FMoM: spatial gate from the high band, channel gate from the low band), and one more cross-attention.

``adair`` is the configuration of the official training script (``AdaIR(decoder=True)`` in
``train.py`` of c-yn/AdaIR): dim 48, blocks (4, 6, 6, 8), 4 refinement blocks: 28,784,824 parameters.
Two of them are kept only for that count: each AFLB defines a 3x3 conv and a 7x7 "score" conv it never
calls (``unused_conv``, ``unused_score_conv``), and its band-size predictor (``rate_conv``) reaches the
output only through an integer cast, so it never receives a gradient; all three are frozen
(``requires_grad=False``), which changes nothing in training.

``exda_adair`` turns on the two ExDA primitives in every transformer block's attention (Restormer's
transposed attention); the AFLB's cross-attentions stay as published.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import partial
from typing import Unpack

import torch
import torch.nn.functional as F
from torch import nn

from exda.layers import TransformerBlock, TransposedCrossAttention
from exda.layers.attention import wide
from exda.layers.global_token import GlobalTokenKind, TokenKwargs, token_options
from exda.layers.value_transform import ValueTransformKind
from exda.models.official import StateDict, official_mapping
from exda.models.registry import ModelTraits, model_options, register_model
from exda.models.unet import UNet, unet_from_official, unet_widths

LOW_BAND_UNIT = 128  # the low-frequency box's half-size is (side // 128) * a predicted rate in (0, 1)


class FrequencyRefine(nn.Module):
    """FMoM: low * spatial_gate(high) + high * channel_gate(low), then a 1x1 conv."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.spatial = nn.Conv2d(2, 1, kernel_size=7, padding=3, bias=False)
        self.channel_mlp = nn.Sequential(nn.Conv2d(dim, dim // 16, 1, bias=False), nn.ReLU(),
                                         nn.Conv2d(dim // 16, dim, 1, bias=False))
        self.proj = nn.Conv2d(dim, dim, kernel_size=1)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        spatial = torch.cat([high.amax(dim=1, keepdim=True), high.mean(dim=1, keepdim=True)], dim=1)
        spatial_gate = self.spatial(spatial).sigmoid()
        channel_gate = (self.channel_mlp(low.mean(dim=(-2, -1), keepdim=True))
                        + self.channel_mlp(low.amax(dim=(-2, -1), keepdim=True))).sigmoid()
        return self.proj(low * spatial_gate + high * channel_gate)


class FrequencyModulation(nn.Module):
    """AFLB: modulate decoder features ``y`` with the low/high frequency bands of the input image.
    Returns cross_agg(y, FMoM(low, high)) * para1 + y * para2 (para1 starts at 0, para2 at 1)."""

    def __init__(self, dim: int, heads: int, bias: bool = False, in_channels: int = 3) -> None:
        super().__init__()
        self.embed = nn.Conv2d(in_channels, dim, kernel_size=3, padding=1, bias=False)
        self.rate_conv = nn.Sequential(nn.Conv2d(dim, dim // 8, 1, bias=False), nn.GELU(),
                                       nn.Conv2d(dim // 8, 2, 1, bias=False))
        self.cross_high = TransposedCrossAttention(dim, heads, bias)
        self.cross_low = TransposedCrossAttention(dim, heads, bias)
        self.cross_agg = TransposedCrossAttention(dim, heads, bias)
        self.refine = FrequencyRefine(dim)
        self.para1 = nn.Parameter(torch.zeros(dim, 1, 1))
        self.para2 = nn.Parameter(torch.ones(dim, 1, 1))
        # Published but never called (kept for the official parameter count), and the band-size predictor
        # whose only path to the output is an integer cast: none of them can be trained.
        self.unused_conv = nn.Conv2d(in_channels, dim, kernel_size=3, padding=1, bias=False)
        self.unused_score_conv = nn.Conv2d(2, 2, 7, padding=3)
        for module in (self.unused_conv, self.unused_score_conv, self.rate_conv):
            module.requires_grad_(False)

    def forward(self, image: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(image, y.shape[-2:], mode="bilinear", align_corners=False)
        high, low = self.split_bands(self.embed(x))
        agg = self.refine(self.cross_low(low, y), self.cross_high(high, y))
        return self.cross_agg(y, agg) * self.para1 + y * self.para2

    def split_bands(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """|ifft| of the spectrum outside / inside a centred box whose half-sides are
        (side // 128) * sigmoid(rate_conv(mean(x))), truncated to integers (per image)."""
        b, c, h, w = x.shape
        rate = self.rate_conv(x.mean(dim=(-2, -1), keepdim=True)).sigmoid()[:, :, 0, 0]  # B x 2
        half_h = (h // LOW_BAND_UNIT * rate[:, 0]).int()[:, None]
        half_w = (w // LOW_BAND_UNIT * rate[:, 1]).int()[:, None]
        rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
        in_rows = (rows >= h // 2 - half_h) & (rows < h // 2 + half_h)  # B x h, in the centred spectrum
        in_cols = (cols >= w // 2 - half_w) & (cols < w // 2 + half_w)
        mask = (in_rows[:, :, None] & in_cols[:, None, :])[:, None].to(x.dtype)
        # Centre the mask's frame on frequency 0 instead of shifting the spectrum (the same product).
        mask = torch.roll(mask, shifts=(-(h // 2), -(w // 2)), dims=(2, 3))
        spectrum = torch.fft.fft2(x.to(wide(x.dtype)), norm="forward")  # FFTs in float32 at least (bf16 / fp16)
        low = torch.fft.ifft2(spectrum * mask, norm="forward").abs()
        high = torch.fft.ifft2(spectrum * (1 - mask), norm="forward").abs()
        return high.to(x.dtype), low.to(x.dtype)


class AdaIR(UNet):
    """The network. ``forward`` takes and returns B x C x H x W in [0, 1], any H x W (reflect-padded to a
    multiple of 8, then cropped)."""

    def __init__(
        self,
        in_channels: int = 3,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion: float = 2.66,
        bias: bool = False,
        value_transform: ValueTransformKind = "off",
        global_token: GlobalTokenKind = "off",
        **token_args: Unpack[TokenKwargs],
    ) -> None:
        super().__init__(in_channels)
        block = partial(TransformerBlock, ffn_expansion=ffn_expansion, bias=bias, value_transform=value_transform,
                        global_token=global_token, token=token_options(**token_args))
        self.build_encoder(block, dim, heads, num_blocks)
        self.build_latent(block, dim, heads, num_blocks)
        self.build_decoder(block, dim, heads, num_blocks, bias)
        # AFLB before each up step, index j as the up step's (all with the heads of level 3, as published).
        self.frequency = nn.ModuleList(
            FrequencyModulation(width, heads[2], bias, in_channels) for width in unet_widths(dim)[1:]
        )
        self.build_output(block, dim, heads, num_refinement_blocks, bias)

    def before_up(self, j: int, feats: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.frequency[j](image, feats)


SIZES: dict[str, dict] = {
    "base": dict(dim=48, num_blocks=(4, 6, 6, 8), num_refinement_blocks=4, heads=(1, 2, 4, 8)),
    "test": dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 2, 2)),
}

TRAITS = ModelTraits(onnx_unsupported="its frequency modulation uses torch.fft, which the ONNX exporter does not "
                     "support")


def build(size: str, exda: bool, **kwargs) -> AdaIR:
    """An AdaIR of a named size; ``exda=True`` turns both primitives on (each still overridable)."""
    return AdaIR(**model_options(SIZES[size], exda, kwargs))


@register_model(traits=TRAITS)
def adair(**kwargs) -> AdaIR:
    return build("base", exda=False, **kwargs)


@register_model(traits=TRAITS)
def adair_test(**kwargs) -> AdaIR:
    return build("test", exda=False, **kwargs)


@register_model(traits=TRAITS)
def exda_adair(**kwargs) -> AdaIR:
    return build("base", exda=True, **kwargs)


@register_model(traits=TRAITS)
def exda_adair_test(**kwargs) -> AdaIR:
    return build("test", exda=True, **kwargs)


# Official names beyond Restormer's (net/model.py of c-yn/AdaIR): the AFLBs, and parts inside one.
_OFFICIAL_NAMES = {"fre1.": "frequency.2.", "fre2.": "frequency.1.", "fre3.": "frequency.0."}
_INNER = [(re.compile(r"\.conv1\."), ".embed."), (re.compile(r"\.conv\."), ".unused_conv."),
          (re.compile(r"\.score_gen\."), ".unused_score_conv."),
          (re.compile(r"\.channel_cross_l\."), ".cross_high."), (re.compile(r"\.channel_cross_h\."), ".cross_low."),
          (re.compile(r"\.channel_cross_agg\."), ".cross_agg."),
          (re.compile(r"\.frequency_refine\.SpatialGate\.spatial\."), ".refine.spatial."),
          (re.compile(r"\.frequency_refine\.ChannelGate\.mlp\."), ".refine.channel_mlp."),
          (re.compile(r"\.frequency_refine\.proj\."), ".refine.proj.")]


@official_mapping("adair")
def adair_from_official(state: StateDict) -> StateDict:
    """The official ``AdaIR.state_dict()`` keys -> ours (tensors unchanged). Unknown keys are kept, so the
    loader's strict check names them."""
    mapped = {}
    for key, tensor in unet_from_official(state, _OFFICIAL_NAMES).items():
        for pattern, repl in _INNER:
            key = pattern.sub(repl, key, count=1)
        mapped[key] = tensor
    return mapped
