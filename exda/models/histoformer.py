"""Histoformer (Sun et al., ECCV 2024): a Restormer-style U-Net whose attention works on intensity bins.

    image -> PatchEmbed -> [Encoder_l -> Down -> concat SkipEmbed(image) -> 1x1] x3 -> Latent ->
    [Up -> concat skip -> reduce -> Decoder_l] x3 -> Refinement -> 3x3 conv -> + image

Its block is LN -> DHSA (dynamic-range histogram self-attention) -> LN -> DGFF (dual-scale gated FFN),
with parameter-free layer norms. ``histoformer`` is the official all-weather configuration
(``Allweather/Options/Allweather_Histoformer.yml`` of sunshangquan/Histoformer): 16,615,100 parameters.

The ExDA version puts the two primitives into DHSA (docs/peers.md says why each reading is sound):
the nonlinear value transform acts on v in image order, before v is sorted, and the global spatial
token (row kind) is gathered into each channel's sort order with the same index as q, k and v, so
every binned row is compared with the token over exactly its own pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Unpack

import torch
import torch.nn.functional as F
from torch import nn

from exda.layers import GlobalSpatialToken, LayerNorm2d, NonlinearValue, TransformerBlock
from exda.layers.attention import cosine_logits, inverse_norm, wide
from exda.layers.global_token import GlobalTokenKind, TokenKwargs, TokenOptions, token_options
from exda.layers.value_transform import ValueTransformKind
from exda.models.official import StateDict, official_mapping
from exda.models.registry import ModelTraits, model_options, register_model
from exda.models.unet import LEVELS, UNet, unet_from_official, unet_widths


def softmax_with_zero(logits: torch.Tensor) -> torch.Tensor:
    """exp(l) / (1 + sum exp(l)) along the last axis (Histoformer's ``softmax_1``): a softmax over the
    logits plus one extra zero logit whose weight is dropped, so a row may attend to nothing. Computed
    as that softmax, which subtracts the maximum and so cannot overflow."""
    zero = logits.new_zeros(logits.shape[:-1] + (1,))
    return torch.cat([logits, zero], dim=-1).softmax(dim=-1)[..., :-1]


def to_bins(t: torch.Tensor, heads: int, box: bool) -> torch.Tensor:
    """B x C x N (pixels in sorted order) -> B x heads x (C/heads * bins) x N/bins, with ``heads`` bins.

    ``box``: each bin is a contiguous run of the sorted pixels (an intensity range); otherwise bin i
    takes every ``heads``-th pixel from i (a strided sample spanning the whole range). N must divide.
    """
    b, c, n = t.shape
    if box:
        return t.reshape(b, heads, c // heads * heads, n // heads)
    t = t.reshape(b, heads, c // heads, n // heads, heads).transpose(-2, -1)
    return t.reshape(b, heads, c // heads * heads, n // heads)


def from_bins(t: torch.Tensor, channels: int, box: bool) -> torch.Tensor:
    """The inverse of :func:`to_bins`: B x heads x (C/heads * bins) x N/bins -> B x C x N."""
    b, heads, _, m = t.shape
    if box:
        return t.reshape(b, channels, heads * m)
    t = t.reshape(b, heads, channels // heads, heads, m).transpose(-2, -1)
    return t.reshape(b, channels, heads * m)


class HistogramAttention(nn.Module):
    """DHSA: dynamic-range histogram self-attention.

    Half of the input channels are sorted along H, then W, before the 1x1 + 3x3 depthwise projection
    (the "dynamic-range convolution": the depthwise kernel sees pixels of similar intensity). Each value
    channel is then sorted over all pixels and q1, k1, q2, k2 follow its order; the sorted pixels form
    ``heads`` bins, contiguous ranges for (q1, k1) and strided samples for (q2, k2), and transposed
    attention runs over (channel, bin) rows with a softmax that may attend to nothing. The two results
    multiply, go back to image order, are projected, and the sorted half is put back in place.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        bias: bool = False,
        value_transform: ValueTransformKind = "off",
        global_token: GlobalTokenKind = "off",
        token: TokenOptions | None = None,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        if global_token not in ("off", "row"):
            raise ValueError(f"histogram attention takes global_token 'off' or 'row', got {global_token!r}")
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 5, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 5, dim * 5, kernel_size=3, padding=1, groups=dim * 5, bias=bias)
        self.value = NonlinearValue(dim, heads, value_transform, bias=bias)
        self.token = None if global_token == "off" else GlobalSpatialToken(heads, "row", token)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor, x_in: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` is the normalised block input; ``x_in`` the raw block input the GST pools (default x)."""
        b, c, h, w = x.shape
        half = c // 2
        sorted_h, index_h = x[:, :half].sort(dim=-2)
        sorted_hw, index_w = sorted_h.sort(dim=-1)
        q1, k1, q2, k2, v = self.qkv_dwconv(self.qkv(torch.cat([sorted_hw, x[:, half:]], dim=1))).chunk(5, dim=1)
        v, order = self.value(v).reshape(b, c, h * w).sort(dim=-1)
        q1, k1, q2, k2 = (t.reshape(b, c, h * w).gather(2, order) for t in (q1, k1, q2, k2))
        tok = None
        if self.token is not None:  # the head's token row, in each channel's own sort order
            row = self.token.tokens(self.token.source(x, x_in)).to(v.dtype)
            tok = row.expand(b, self.heads, c // self.heads, h * w).reshape(b, c, h * w).gather(2, order)
        out = self._attend_bins(q1, k1, v, tok, box=True) * self._attend_bins(q2, k2, v, tok, box=False)
        out = self.project_out(torch.empty_like(out).scatter_(2, order, out).view(b, c, h, w))
        first = torch.empty_like(out[:, :half]).scatter_(-1, index_w, out[:, :half])
        first = torch.empty_like(first).scatter_(-2, index_h, first)
        return torch.cat([first, out[:, half:]], dim=1)

    def _attend_bins(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tok: torch.Tensor | None, box: bool
    ) -> torch.Tensor:
        """Attention over (channel, bin) rows of sorted B x C x N tensors, zero-padded to whole bins."""
        c, n = q.shape[1:]
        pad = (0, -n % self.heads)
        q, k, v = (to_bins(F.pad(t, pad), self.heads, box) for t in (q, k, v))
        logits = cosine_logits(q, k)
        if tok is None:
            out = softmax_with_zero(logits * self.temperature).to(v.dtype) @ v
        else:
            tok = to_bins(F.pad(tok, pad), self.heads, box)
            own = (q * tok).sum(dim=-1, keepdim=True, dtype=wide(q.dtype)) * inverse_norm(q) * inverse_norm(tok)
            weights = softmax_with_zero(torch.cat([logits, own], dim=-1) * self.temperature).to(v.dtype)
            out = weights[..., :-1] @ v + weights[..., -1:] * tok
        return from_bins(out, c, box)[..., :n]


class DualScaleGatedFFN(nn.Module):
    """DGFF: 1x1 expand, PixelShuffle(2), 5x5 depthwise on one half and 3x3 dilation-2 depthwise on the
    other, mish gate, PixelUnshuffle(2), 1x1 back. The hidden width must divide by 4."""

    def __init__(self, dim: int, expansion: float = 2.667, bias: bool = False) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        if hidden % 4:
            raise ValueError(f"DGFF hidden width int({dim} * {expansion}) = {hidden} is not a multiple of 4")
        quarter = hidden // 4
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv5 = nn.Conv2d(quarter, quarter, kernel_size=5, padding=2, groups=quarter, bias=bias)
        self.dwconv3_dilated = nn.Conv2d(quarter, quarter, kernel_size=3, padding=2, dilation=2, groups=quarter,
                                         bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = F.pixel_shuffle(self.project_in(x), 2).chunk(2, dim=1)
        return self.project_out(F.pixel_unshuffle(F.mish(self.dwconv3_dilated(x2)) * self.dwconv5(x1), 2))


class SkipEmbed(nn.Module):
    """Histoformer's image pyramid: 2x2 average pool, 1x1 conv, 3x3 depthwise conv (channels kept)."""

    def __init__(self, channels: int, bias: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.AvgPool2d(2),
            nn.Conv2d(channels, channels, kernel_size=1, bias=bias),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1, groups=channels, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Histoformer(UNet):
    """The network. ``forward`` takes and returns B x C x H x W in [0, 1], any H x W (reflect-padded to a
    multiple of 8 as the official test script does, then cropped back)."""

    def __init__(
        self,
        in_channels: int = 3,
        dim: int = 36,
        num_blocks: Sequence[int] = (4, 4, 6, 8),
        num_refinement_blocks: int = 4,
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion: float = 2.667,
        bias: bool = False,
        value_transform: ValueTransformKind = "off",
        global_token: GlobalTokenKind = "off",
        **token_args: Unpack[TokenKwargs],
    ) -> None:
        super().__init__(in_channels)
        # LN -> DHSA -> LN -> DGFF, with parameter-free (centred) layer norms.
        block = partial(TransformerBlock, ffn_expansion=ffn_expansion, bias=bias, value_transform=value_transform,
                        global_token=global_token, token=token_options(**token_args), attn_layer=HistogramAttention,
                        ffn_layer=DualScaleGatedFFN, norm_layer=partial(LayerNorm2d, affine=False))
        self.build_encoder(block, dim, heads, num_blocks)
        # The official code builds these for 3 channels only; here they follow in_channels.
        self.skip_embeds = nn.ModuleList(SkipEmbed(in_channels) for _ in range(LEVELS - 1))
        self.skip_reduces = nn.ModuleList(
            nn.Conv2d(width + in_channels, width, kernel_size=1, bias=bias) for width in unet_widths(dim)[1:]
        )
        self.build_latent(block, dim, heads, num_blocks)
        self.build_decoder(block, dim, heads, num_blocks, bias)
        self.build_output(block, dim, heads, num_refinement_blocks, bias)

    def downsample(self, j: int, feats: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The image pyramid: the input, pooled to level j + 1, joins the down-sampled features there."""
        image = self.skip_embeds[j](image)
        return self.skip_reduces[j](torch.cat([self.downs[j](feats), image], dim=1)), image


SIZES: dict[str, dict] = {
    "base": dict(dim=36, num_blocks=(4, 4, 6, 8), num_refinement_blocks=4, heads=(1, 2, 4, 8)),
    "test": dict(dim=12, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 2, 2, 4)),
}

# Sorting pixels by value makes the output jump on tiny input changes (the official code too): bf16 rounding
# moves it by whole grey levels, so the fast path keeps it in fp32 (exda/inference/fast.py). Float round-off
# alone moves it far (histoformer_test at initialisation, 67 x 45: PyTorch fp32 vs fp64 28 dB PSNR, 1 vs 2
# threads 56 dB; onnxruntime vs PyTorch 28 dB, where the other families agree to 140-150 dB): the exported
# graph computes the same function, but no comparison with PyTorch can tell a right graph from a wrong one.
TRAITS = ModelTraits(bf16_safe=False, onnx_unsupported="its output jumps on float round-off (DHSA sorts pixels by "
                     "value; PyTorch fp32 vs fp64 differ by 28 dB PSNR), so no exported graph can be checked")


def build(size: str, exda: bool, **kwargs) -> Histoformer:
    """A Histoformer of a named size; ``exda=True`` turns both primitives on (each still overridable)."""
    return Histoformer(**model_options(SIZES[size], exda, kwargs))


@register_model(traits=TRAITS)
def histoformer(**kwargs) -> Histoformer:
    return build("base", exda=False, **kwargs)


@register_model(traits=TRAITS)
def histoformer_test(**kwargs) -> Histoformer:
    return build("test", exda=False, **kwargs)


@register_model(traits=TRAITS)
def exda_histoformer(**kwargs) -> Histoformer:
    return build("base", exda=True, **kwargs)


@register_model(traits=TRAITS)
def exda_histoformer_test(**kwargs) -> Histoformer:
    return build("test", exda=True, **kwargs)


# Official names beyond Restormer's (basicsr/models/archs/histoformer_arch.py): the image pyramid, and
# parts inside a block.
_OFFICIAL_NAMES = {**{f"reduce_chan_level_{k}.": f"skip_reduces.{k - 1}." for k in (1, 2, 3)},
                   **{f"skip_patch_embed{k}.proj.": f"skip_embeds.{k - 1}.body." for k in (1, 2, 3)}}
_OFFICIAL_BLOCK_PARTS = {"attn_g.": "attn.", "ffn.dwconv_5.": "ffn.dwconv5.",
                         "ffn.dwconv_dilated2_1.": "ffn.dwconv3_dilated."}


@official_mapping("histoformer")
def histoformer_from_official(state: StateDict) -> StateDict:
    """sunshangquan/Histoformer's ``Histoformer.state_dict()`` keys -> ours (tensors unchanged).

    Keys this mapping does not know are kept as they are, so the loader's strict check names them.
    """
    mapped = {}
    for key, tensor in unet_from_official(state, _OFFICIAL_NAMES).items():
        for old, ours in _OFFICIAL_BLOCK_PARTS.items():
            key = key.replace("." + old, "." + ours)
        mapped[key] = tensor
    return mapped
