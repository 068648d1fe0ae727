"""Restormer-style 4-level U-Net, optionally with PromptIR's prompt stages and ExDA's primitives.

    image -> PatchEmbed -> [Encoder_l -> Down] x3 -> Latent -> [Prompt_l -> Up -> concat skip ->
    reduce -> Decoder_l] x3 -> Refinement -> 3x3 conv -> + image

With ``value_transform`` and ``global_token`` off this is Restormer (26,126,644 parameters at the
default size); with prompt stages it is PromptIR (see exda/models/promptir.py). Every transformer
block becomes an ExDA block when the primitives are on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Unpack

import torch
import torch.nn.functional as F
from torch import nn

from exda.layers import Downsample, PatchEmbed, TransformerBlock, Upsample
from exda.layers.global_token import GlobalTokenKind, TokenKwargs, token_options
from exda.layers.value_transform import ValueTransformKind
from exda.models.official import official_config, official_mapping, rename_prefixes
from exda.models.registry import model_options, register_model

LEVELS = 4  # resolution levels; inputs are padded to a multiple of 2 ** (LEVELS - 1)


@dataclass(frozen=True)
class PromptSpec:
    """PromptIR's prompt stages, one per decoder step, listed shallow to deep (levels 1, 2, 3)."""

    dims: tuple[int, int, int] = (64, 128, 320)
    sizes: tuple[int, int, int] = (64, 32, 16)
    length: int = 5
    # The original PromptIR defines six 1x1 convs it never calls (215,296 parameters at the default
    # size); they are part of its published count of 35,592,263. Kept only to reproduce that count.
    unused_published_convs: bool = False


class PromptGenBlock(nn.Module):
    """PromptIR's prompt generator: pooled features pick a softmax mix of learnable prompt maps."""

    def __init__(self, feature_dim: int, prompt_dim: int, prompt_size: int, prompt_len: int) -> None:
        super().__init__()
        self.prompts = nn.Parameter(torch.rand(prompt_len, prompt_dim, prompt_size, prompt_size))
        self.select = nn.Linear(feature_dim, prompt_len)
        self.conv = nn.Conv2d(prompt_dim, prompt_dim, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.select(x.mean(dim=(-2, -1))).softmax(dim=1)  # B x prompt_len
        prompt = torch.einsum("bn,nchw->bchw", weights, self.prompts)
        prompt = F.interpolate(prompt, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(prompt)


class PromptStage(nn.Module):
    """Concatenate a generated prompt to the features, mix them with one transformer block, reduce."""

    def __init__(self, in_dim: int, out_dim: int, prompt_dim: int, prompt_size: int, prompt_len: int, block):
        super().__init__()
        self.generate = PromptGenBlock(in_dim, prompt_dim, prompt_size, prompt_len)
        self.mix = block(in_dim + prompt_dim)
        self.reduce = nn.Conv2d(in_dim + prompt_dim, out_dim, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduce(self.mix(torch.cat([x, self.generate(x)], dim=1)))


def _unused_promptir_convs(widths: Sequence[int], dims: Sequence[int]) -> nn.ModuleList:
    """PromptIR's never-called ``chnl_reduce1-3`` and ``reduce_noise_channel_1-3`` (no gradient, ever)."""
    reduced = (dims[0], dims[1], 2 * dims[1])
    convs = [nn.Conv2d(dims[j], reduced[j], kernel_size=1, bias=False) for j in range(3)]
    convs += [nn.Conv2d(widths[j] + reduced[j], widths[j], kernel_size=1, bias=False) for j in range(3)]
    return nn.ModuleList(convs)


class RestormerUNet(nn.Module):
    """The shared backbone. ``forward`` takes and returns B x C x H x W in [0, 1], any H x W."""

    def __init__(
        self,
        in_channels: int = 3,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion: float = 2.66,
        bias: bool = False,
        norm_bias: bool = True,
        value_transform: ValueTransformKind = "off",
        global_token: GlobalTokenKind = "off",
        prompts: PromptSpec | None = None,
        **token_args: Unpack[TokenKwargs],
    ) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        self.in_channels = in_channels
        widths = [dim * 2**level for level in range(LEVELS)]
        block_kw = dict(ffn_expansion=ffn_expansion, bias=bias, norm_bias=norm_bias,
                        value_transform=value_transform, global_token=global_token,
                        token=token_options(**token_args))

        def stage(width: int, n_heads: int, depth: int) -> nn.Sequential:
            return nn.Sequential(*(TransformerBlock(width, n_heads, **block_kw) for _ in range(depth)))

        self.patch_embed = PatchEmbed(in_channels, dim)  # bias-free whatever ``bias`` says, as in the official code
        self.encoders = nn.ModuleList(stage(widths[i], heads[i], num_blocks[i]) for i in range(LEVELS - 1))
        self.downs = nn.ModuleList(Downsample(widths[i]) for i in range(LEVELS - 1))
        self.latent = stage(widths[-1], heads[-1], num_blocks[-1])

        # Decoder steps, index j = level the step arrives at (0 = full resolution).
        self.prompts = nn.ModuleList()
        self.ups = nn.ModuleList()
        self.reduces = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for j in range(LEVELS - 1):
            incoming = widths[j + 1]
            if prompts is None:
                self.prompts.append(nn.Identity())
            else:
                # PromptIR reduces the deepest prompt stage to 4C rather than keeping 8C.
                out = widths[j + 1] if j < LEVELS - 2 else widths[j]
                mix = partial(TransformerBlock, heads=heads[2], **block_kw)
                self.prompts.append(
                    PromptStage(incoming, out, prompts.dims[j], prompts.sizes[j], prompts.length, mix)
                )
                incoming = out
            self.ups.append(Upsample(incoming))
            merged = incoming // 2 + widths[j]
            # Level 1 keeps the concatenated 2C width; deeper levels reduce back with a 1x1 conv.
            decoder_width = merged if j == 0 else widths[j]
            self.reduces.append(
                nn.Identity() if j == 0 else nn.Conv2d(merged, decoder_width, kernel_size=1, bias=bias)
            )
            self.decoders.append(stage(decoder_width, heads[j], num_blocks[j]))
        if prompts is not None and prompts.unused_published_convs:
            self.unused_published_convs = _unused_promptir_convs(widths, prompts.dims)
        self.refinement = stage(2 * dim, heads[0], num_refinement_blocks)
        self.output = nn.Conv2d(2 * dim, in_channels, kernel_size=3, padding=1, bias=bias)

    @staticmethod
    def _pad(x: torch.Tensor) -> torch.Tensor:
        """Pad bottom and right to a multiple of 2 ** (LEVELS - 1): reflect, or replicate when a side is
        too short to reflect. Written as one gather per axis, with no branch on the size, so that an
        exported graph (ONNX) pads every input size as PyTorch does; the same values as ``F.pad``."""
        multiple = 2 ** (LEVELS - 1)
        index = []
        for n in x.shape[-2:]:
            pos = torch.arange(n + (-n) % multiple, device=x.device)
            index.append((torch.where(pos < n, pos, 2 * (n - 1) - pos), pos.clamp(max=n - 1)))
        (reflect_h, replicate_h), (reflect_w, replicate_w) = index
        can_reflect = (reflect_h.min() >= 0) & (reflect_w.min() >= 0)
        rows = torch.where(can_reflect, reflect_h, replicate_h)
        cols = torch.where(can_reflect, reflect_w, replicate_w)
        return x.index_select(-2, rows).index_select(-1, cols)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = self.patch_embed(x)
        skips = []
        for encoder, down in zip(self.encoders, self.downs, strict=True):
            feats = encoder(feats)
            skips.append(feats)
            feats = down(feats)
        return feats, skips

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        padded = self._pad(x)
        feats, skips = self._encode(padded)
        feats = self.latent(feats)
        for j in reversed(range(LEVELS - 1)):
            feats = self.ups[j](self.prompts[j](feats))
            feats = self.decoders[j](self.reduces[j](torch.cat([feats, skips[j]], dim=1)))
        out = self.output(self.refinement(feats)) + padded
        return out[..., :h, :w]

    @torch.no_grad()
    def degradation_descriptor(self, x: torch.Tensor) -> torch.Tensor:
        """The global spatial token's view of the input: the latent blocks' GST cell weights
        (softmax over the G x G pooled cells, per channel), averaged over blocks: B x (8C * G * G).

        Raises ValueError when the model has no global token.
        """
        feats, _ = self._encode(self._pad(x))
        weights = []
        for block in self.latent:
            cell_weights = block.token_cell_weights(feats)
            if cell_weights is None:
                raise ValueError("this model has no global spatial token (global_token='off')")
            weights.append(cell_weights)
            feats = block(feats)
        return torch.stack(weights).mean(dim=0).flatten(1)


SIZES: dict[str, dict] = {
    "base": dict(dim=48, num_blocks=(4, 6, 6, 8), num_refinement_blocks=4, heads=(1, 2, 4, 8)),
    "small": dict(dim=32, num_blocks=(2, 3, 3, 4), num_refinement_blocks=2, heads=(1, 2, 4, 8)),
    "tiny": dict(dim=16, num_blocks=(1, 2, 2, 2), num_refinement_blocks=1, heads=(1, 2, 4, 8)),
    "test": dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 2, 2)),
}
def build(size: str, exda: bool, **kwargs) -> RestormerUNet:
    """A backbone of a named size; ``exda=True`` turns both primitives on (each still overridable)."""
    return RestormerUNet(**model_options(SIZES[size], exda, kwargs))


@register_model
def restormer(**kwargs) -> RestormerUNet:
    return build("base", exda=False, **kwargs)


@register_model
def restormer_small(**kwargs) -> RestormerUNet:
    return build("small", exda=False, **kwargs)


@register_model
def restormer_tiny(**kwargs) -> RestormerUNet:
    return build("tiny", exda=False, **kwargs)


@register_model
def restormer_test(**kwargs) -> RestormerUNet:
    return build("test", exda=False, **kwargs)


@register_model
def exda_restormer(**kwargs) -> RestormerUNet:
    return build("base", exda=True, **kwargs)


@register_model
def exda_restormer_small(**kwargs) -> RestormerUNet:
    return build("small", exda=True, **kwargs)


@register_model
def exda_restormer_tiny(**kwargs) -> RestormerUNet:
    return build("tiny", exda=True, **kwargs)


@register_model
def exda_restormer_test(**kwargs) -> RestormerUNet:
    return build("test", exda=True, **kwargs)


# Official code (swz30/Restormer, basicsr/models/archs/restormer_arch.py) -> these modules.
_RESTORMER_NAMES = {
    "encoder_level1.": "encoders.0.", "encoder_level2.": "encoders.1.", "encoder_level3.": "encoders.2.",
    "down1_2.": "downs.0.", "down2_3.": "downs.1.", "down3_4.": "downs.2.",
    "up2_1.": "ups.0.", "up3_2.": "ups.1.", "up4_3.": "ups.2.",
    "reduce_chan_level2.": "reduces.1.", "reduce_chan_level3.": "reduces.2.",
    "decoder_level1.": "decoders.0.", "decoder_level2.": "decoders.1.", "decoder_level3.": "decoders.2.",
}


def official_block_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inside a transformer block the official LayerNorm wraps its parameters in ``body``."""
    return {k.replace(".norm1.body.", ".norm1.").replace(".norm2.body.", ".norm2."): v for k, v in state.items()}


@official_mapping("restormer", "restormer_small", "restormer_tiny", "restormer_test")
def restormer_from_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return official_block_names(rename_prefixes(state, _RESTORMER_NAMES))


@official_config("restormer", "restormer_small", "restormer_tiny", "restormer_test")
def restormer_official_config(state: dict[str, torch.Tensor]) -> dict:
    """Restormer's published checkpoints differ in the norm (``LayerNorm_type='BiasFree'`` for real and
    Gaussian denoising) and in the input channels (grayscale denoising)."""
    config = {}
    if "patch_embed.proj.weight" in state and state["patch_embed.proj.weight"].shape[1] == 1:
        config["in_channels"] = 1
    norms = [k for k in state if ".norm1." in k]
    if norms and not any(k.endswith(".bias") for k in norms):
        config["norm_bias"] = False
    return config
