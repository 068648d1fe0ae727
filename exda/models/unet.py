"""The 4-level U-Net that Restormer, PromptIR, Histoformer and AdaIR are built on; AMIR and MoCE-IR use its parts.

    image -> pad -> PatchEmbed -> [Encoder_l -> skip -> downsample] x3 -> Latent ->
    [before_up -> Up -> concat skip -> reduce -> Decoder_l] x3 -> Refinement -> 3x3 conv -> + image -> crop

A family passes a block factory, ``(width, heads) -> block``, builds its network in ``__init__`` with the
``build_*`` methods, its own modules between them, and overrides the hooks where its network differs:
``downsample`` (Histoformer's image pyramid joins the encoder) and ``before_up`` (PromptIR's prompt stages,
AdaIR's frequency modulation). Each family keeps the order in which it builds the parts: a seeded
initialisation draws the weights in that order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import nn

from exda.layers import Downsample, PatchEmbed, Upsample
from exda.models.official import StateDict, rename_prefixes
from exda.models.registry import image_channels

LEVELS = 4  # resolution levels
MULTIPLE = 2 ** (LEVELS - 1)  # inputs are padded to a multiple of this

BlockFactory = Callable[[int, int], nn.Module]  # (width, heads) -> one block
DecoderOrder = Literal["by_part", "by_level"]


def pad_to_multiple(x: torch.Tensor, multiple: int = MULTIPLE, minimum: int = 0) -> torch.Tensor:
    """Pad bottom and right to a multiple of ``multiple`` and at least ``minimum``: reflect, or replicate
    when a side is too short to reflect; the same values as ``F.pad``. Written as one gather per axis, with
    no branch on the size, so that an exported graph (ONNX) pads every input size as PyTorch does."""
    index = []
    for n in x.shape[-2:]:
        size = n + (-n) % multiple
        if minimum:  # a tensor maximum, not max(), so that an export keeps the size dynamic
            size = torch.clamp(torch.as_tensor(size), min=minimum)
        pos = torch.arange(size, device=x.device)
        index.append((torch.where(pos < n, pos, 2 * (n - 1) - pos), pos.clamp(max=n - 1)))
    (reflect_h, replicate_h), (reflect_w, replicate_w) = index
    can_reflect = (reflect_h.min() >= 0) & (reflect_w.min() >= 0)
    rows = torch.where(can_reflect, reflect_h, replicate_h)
    cols = torch.where(can_reflect, reflect_w, replicate_w)
    return x.index_select(-2, rows).index_select(-1, cols)


def unet_widths(dim: int) -> list[int]:
    """The feature width of each level: C, 2C, 4C, 8C."""
    return [dim * 2**level for level in range(LEVELS)]


def decoder_width(dim: int, level: int) -> int:
    """Level 1 keeps the concatenated 2C width; deeper levels reduce back to their own."""
    return 2 * dim if level == 0 else unet_widths(dim)[level]


def stage(block: BlockFactory, width: int, heads: int, depth: int) -> nn.Sequential:
    """``depth`` blocks of one width in a row."""
    return nn.Sequential(*(block(width, heads) for _ in range(depth)))


def encoder_stages(block: BlockFactory, dim: int, heads: Sequence[int], num_blocks: Sequence[int]) -> nn.ModuleList:
    """The stages of encoder levels 1-3 (the latent stage, level 4, is built apart)."""
    widths = unet_widths(dim)
    return nn.ModuleList(stage(block, widths[i], heads[i], num_blocks[i]) for i in range(LEVELS - 1))


def downsamples(dim: int) -> nn.ModuleList:
    """Index j: from level j to level j + 1 (0 = full resolution)."""
    return nn.ModuleList(Downsample(width) for width in unet_widths(dim)[:-1])


def upsamples(dim: int) -> nn.ModuleList:
    """Index j = the level the step arrives at, as for reductions and decoder stages."""
    return nn.ModuleList(Upsample(width) for width in unet_widths(dim)[1:])


def reduction(merged: int, dim: int, level: int, bias: bool) -> nn.Module:
    """The 1x1 conv from the concatenated [up, skip] width to the decoder's; none at level 1."""
    return nn.Identity() if level == 0 else nn.Conv2d(merged, decoder_width(dim, level), kernel_size=1, bias=bias)


def reductions(dim: int, bias: bool) -> nn.ModuleList:
    """Each step's reduction after concatenating an up-sampled 2C' with the skip's C'."""
    return nn.ModuleList(reduction(2 * width, dim, j, bias) for j, width in enumerate(unet_widths(dim)[:-1]))


def decoder_stages(block: BlockFactory, dim: int, heads: Sequence[int], num_blocks: Sequence[int]) -> nn.ModuleList:
    """The stages of decoder levels 1-3, with the encoder's depths and heads."""
    return nn.ModuleList(stage(block, decoder_width(dim, j), heads[j], num_blocks[j]) for j in range(LEVELS - 1))


class UNet(nn.Module):
    """The skeleton. ``forward`` takes and returns B x C x H x W in [0, 1], any H x W (padded by
    :func:`pad_to_multiple` to a multiple of 8, then cropped back)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.in_channels = image_channels(in_channels)

    def build_encoder(self, block: BlockFactory, dim: int, heads: Sequence[int], num_blocks: Sequence[int]) -> None:
        """``patch_embed`` (bias-free in every official code), then ``encoders`` and ``downs`` of levels 1-3."""
        self.patch_embed = PatchEmbed(self.in_channels, dim)
        self.encoders = encoder_stages(block, dim, heads, num_blocks)
        self.downs = downsamples(dim)

    def build_latent(self, block: BlockFactory, dim: int, heads: Sequence[int], num_blocks: Sequence[int]) -> None:
        """``latent``: the stage at level 4 (8C, H/8)."""
        self.latent = stage(block, unet_widths(dim)[-1], heads[-1], num_blocks[-1])

    def build_decoder(
        self,
        block: BlockFactory,
        dim: int,
        heads: Sequence[int],
        num_blocks: Sequence[int],
        bias: bool,
        order: DecoderOrder = "by_part",
        before_up: Callable[[int, int], int] | None = None,
    ) -> None:
        """``ups``, ``reduces`` and ``decoders``, index j = the level a step arrives at.

        ``order``: all ups, then all reductions, then all decoder stages, or level by level (Restormer's).
        ``before_up(j, width)`` (level by level only): builds what the family puts before step j's
        up-sampling (PromptIR's prompt stage) from the ``width`` arriving there and returns its output width.
        """
        if order == "by_part":
            if before_up is not None:
                raise ValueError("before_up needs order='by_level'")
            self.ups = upsamples(dim)
            self.reduces = reductions(dim, bias)
            self.decoders = decoder_stages(block, dim, heads, num_blocks)
            return
        widths = unet_widths(dim)
        self.ups, self.reduces, self.decoders = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for j in range(LEVELS - 1):
            incoming = widths[j + 1] if before_up is None else before_up(j, widths[j + 1])
            self.ups.append(Upsample(incoming))
            self.reduces.append(reduction(incoming // 2 + widths[j], dim, j, bias))
            self.decoders.append(stage(block, decoder_width(dim, j), heads[j], num_blocks[j]))

    def build_output(
        self, block: BlockFactory, dim: int, heads: Sequence[int], num_refinement_blocks: int, bias: bool
    ) -> None:
        """``refinement`` blocks at 2C and the 3x3 ``output`` conv back to the image's channels."""
        self.refinement = stage(block, 2 * dim, heads[0], num_refinement_blocks)
        self.output = nn.Conv2d(2 * dim, self.in_channels, kernel_size=3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        padded = pad_to_multiple(x)
        feats, skips = self.encode(padded)
        feats = self.latent(feats)
        for j in reversed(range(LEVELS - 1)):
            feats = self.ups[j](self.before_up(j, feats, padded))
            feats = self.decoders[j](self.reduces[j](torch.cat([feats, skips[j]], dim=1)))
        out = self.output(self.refinement(feats)) + padded
        return out[..., :h, :w]

    def encode(self, padded: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The features entering the latent stage, and the encoder's skips, shallowest first."""
        feats, image, skips = self.patch_embed(padded), padded, []
        for j, encoder in enumerate(self.encoders):
            feats = encoder(feats)
            skips.append(feats)
            feats, image = self.downsample(j, feats, image)
        return feats, skips

    def downsample(self, j: int, feats: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hook: from level j to level j + 1. ``image`` is what the family carries down with the features
        (Histoformer: the input at the current level's size); here it passes through unchanged."""
        return self.downs[j](feats), image

    def before_up(self, j: int, feats: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Hook: what the decoder step arriving at level j does before up-sampling; ``image`` is the padded
        input. Nothing here."""
        return feats

    @torch.no_grad()
    def degradation_descriptor(self, x: torch.Tensor) -> torch.Tensor:
        """The global spatial token's view of the input: the latent blocks' GST cell weights (softmax over
        the G x G pooled cells, per channel), averaged over blocks: B x (8C * G * G).

        Raises ValueError when the model has no global token.
        """
        feats, _ = self.encode(pad_to_multiple(x))
        weights = []
        for block in self.latent:
            cell_weights = block.token_cell_weights(feats)
            if cell_weights is None:
                raise ValueError("this model has no global spatial token (global_token='off')")
            weights.append(cell_weights)
            feats = block(feats)
        return torch.stack(weights).mean(dim=0).flatten(1)


# The official names of these parts (Restormer's code; PromptIR, AdaIR, AMIR and Histoformer keep them).
OFFICIAL_NAMES: dict[str, str] = {
    "encoder_level1.": "encoders.0.", "encoder_level2.": "encoders.1.", "encoder_level3.": "encoders.2.",
    "down1_2.": "downs.0.", "down2_3.": "downs.1.", "down3_4.": "downs.2.",
    "up2_1.": "ups.0.", "up3_2.": "ups.1.", "up4_3.": "ups.2.",
    "reduce_chan_level2.": "reduces.1.", "reduce_chan_level3.": "reduces.2.",
    "decoder_level1.": "decoders.0.", "decoder_level2.": "decoders.1.", "decoder_level3.": "decoders.2.",
}


def unet_from_official(state: StateDict, names: dict[str, str] | None = None) -> StateDict:
    """Official keys -> ours (tensors unchanged): the U-Net's parts and a family's own ``names`` (longest
    matching prefix first, :data:`OFFICIAL_NAMES`), and the transformer blocks' layer norms, whose official
    parameters sit in ``norm1.body`` / ``norm2.body``. Other keys pass through, so the loader's strict check
    names them."""
    renamed = rename_prefixes(state, {**OFFICIAL_NAMES, **(names or {})})
    return {k.replace(".norm1.body.", ".norm1.").replace(".norm2.body.", ".norm2."): v for k, v in renamed.items()}
