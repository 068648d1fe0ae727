"""Restormer (Zamir et al., CVPR 2022) and PromptIR (Potlapalli et al., NeurIPS 2023), which adds a prompt
stage before each decoder step, on the shared U-Net; and their ExDA versions.

    image -> PatchEmbed -> [Encoder_l -> Down] x3 -> Latent -> [Prompt_l -> Up -> concat skip -> reduce ->
    Decoder_l] x3 -> Refinement -> 3x3 conv -> + image

With ``value_transform`` and ``global_token`` off and no prompt stages this is Restormer (26,126,644
parameters at the default size). Every transformer block becomes an ExDA block when the primitives are on.

``promptir`` reproduces PromptIR's published parameter count, 35,592,263, which includes 215,296
parameters of six convolutions the original never calls; they are kept (``unused_published_convs``)
only for that count and receive no gradient. The smaller sizes and the ExDA versions leave them out,
so ExDA overheads are measured against ``promptir(prompts=PROMPTS["base"])``, the live network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Unpack

import torch
import torch.nn.functional as F
from torch import nn

from exda.layers import TransformerBlock
from exda.layers.global_token import GlobalTokenKind, TokenKwargs, token_options
from exda.layers.value_transform import ValueTransformKind
from exda.models.official import official_config, official_mapping
from exda.models.registry import model_options, register_model
from exda.models.unet import LEVELS, BlockFactory, UNet, unet_from_official, unet_widths


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

    def __init__(
        self, in_dim: int, out_dim: int, prompt_dim: int, prompt_size: int, prompt_len: int, block: BlockFactory,
        heads: int,
    ) -> None:
        super().__init__()
        self.generate = PromptGenBlock(in_dim, prompt_dim, prompt_size, prompt_len)
        self.mix = block(in_dim + prompt_dim, heads)
        self.reduce = nn.Conv2d(in_dim + prompt_dim, out_dim, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduce(self.mix(torch.cat([x, self.generate(x)], dim=1)))


def _unused_promptir_convs(widths: Sequence[int], dims: Sequence[int]) -> nn.ModuleList:
    """PromptIR's never-called ``chnl_reduce1-3`` and ``reduce_noise_channel_1-3`` (no gradient, ever)."""
    reduced = (dims[0], dims[1], 2 * dims[1])
    convs = [nn.Conv2d(dims[j], reduced[j], kernel_size=1, bias=False) for j in range(3)]
    convs += [nn.Conv2d(widths[j] + reduced[j], widths[j], kernel_size=1, bias=False) for j in range(3)]
    return nn.ModuleList(convs)


class RestormerUNet(UNet):
    """The network. ``forward`` takes and returns B x C x H x W in [0, 1], any H x W."""

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
        super().__init__(in_channels)
        block = partial(TransformerBlock, ffn_expansion=ffn_expansion, bias=bias, norm_bias=norm_bias,
                        value_transform=value_transform, global_token=global_token, token=token_options(**token_args))
        self.build_encoder(block, dim, heads, num_blocks)
        self.build_latent(block, dim, heads, num_blocks)
        self.prompts = nn.ModuleList()

        def prompt_stage(j: int, width: int) -> int:
            """PromptIR's prompt stage before step j's up-sampling (none in Restormer); its output width."""
            if prompts is None:
                self.prompts.append(nn.Identity())
                return width
            out = width if j < LEVELS - 2 else width // 2  # PromptIR's deepest stage reduces 8C to 4C
            self.prompts.append(
                PromptStage(width, out, prompts.dims[j], prompts.sizes[j], prompts.length, block, heads[2])
            )
            return out

        self.build_decoder(block, dim, heads, num_blocks, bias, order="by_level", before_up=prompt_stage)
        if prompts is not None and prompts.unused_published_convs:
            self.unused_published_convs = _unused_promptir_convs(unet_widths(dim), prompts.dims)
        self.build_output(block, dim, heads, num_refinement_blocks, bias)

    def before_up(self, j: int, feats: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.prompts[j](feats)


SIZES: dict[str, dict] = {
    "base": dict(dim=48, num_blocks=(4, 6, 6, 8), num_refinement_blocks=4, heads=(1, 2, 4, 8)),
    "small": dict(dim=32, num_blocks=(2, 3, 3, 4), num_refinement_blocks=2, heads=(1, 2, 4, 8)),
    "tiny": dict(dim=16, num_blocks=(1, 2, 2, 2), num_refinement_blocks=1, heads=(1, 2, 4, 8)),
    "test": dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 2, 2)),
}
# Prompt widths per size; each (decoder width + prompt width) must divide by the mixing block's heads.
PROMPTS: dict[str, PromptSpec] = {
    "base": PromptSpec(),
    "small": PromptSpec(dims=(40, 88, 216)),
    "tiny": PromptSpec(dims=(24, 40, 104)),
    "test": PromptSpec(dims=(8, 16, 40), sizes=(16, 8, 4)),
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


@register_model
def promptir(**kwargs) -> RestormerUNet:
    kwargs.setdefault("prompts", PromptSpec(unused_published_convs=True))
    return build("base", exda=False, **kwargs)


@register_model
def promptir_small(**kwargs) -> RestormerUNet:
    return build("small", exda=False, prompts=PROMPTS["small"], **kwargs)


@register_model
def promptir_tiny(**kwargs) -> RestormerUNet:
    return build("tiny", exda=False, prompts=PROMPTS["tiny"], **kwargs)


@register_model
def promptir_test(**kwargs) -> RestormerUNet:
    return build("test", exda=False, prompts=PROMPTS["test"], **kwargs)


@register_model
def exda_promptir(**kwargs) -> RestormerUNet:
    return build("base", exda=True, prompts=PROMPTS["base"], **kwargs)


@register_model
def exda_promptir_small(**kwargs) -> RestormerUNet:
    return build("small", exda=True, prompts=PROMPTS["small"], **kwargs)


@register_model
def exda_promptir_tiny(**kwargs) -> RestormerUNet:
    return build("tiny", exda=True, prompts=PROMPTS["tiny"], **kwargs)


@register_model
def exda_promptir_test(**kwargs) -> RestormerUNet:
    return build("test", exda=True, prompts=PROMPTS["test"], **kwargs)


@official_mapping("restormer", "restormer_small", "restormer_tiny", "restormer_test")
def restormer_from_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """swz30/Restormer's ``Restormer.state_dict()`` keys (basicsr/models/archs/restormer_arch.py) -> ours."""
    return unet_from_official(state)


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


# Official code (va1shn9v/PromptIR, net/model.py) -> these modules, beyond Restormer's names: prompt stage k
# (1 = shallowest) and the six never-called convolutions.
_PROMPTIR_NAMES = {
    **{f"prompt{k}.linear_layer.": f"prompts.{k - 1}.generate.select." for k in (1, 2, 3)},
    **{f"prompt{k}.conv3x3.": f"prompts.{k - 1}.generate.conv." for k in (1, 2, 3)},
    **{f"noise_level{k}.": f"prompts.{k - 1}.mix." for k in (1, 2, 3)},
    **{f"reduce_noise_level{k}.": f"prompts.{k - 1}.reduce." for k in (1, 2, 3)},
    **{f"chnl_reduce{k}.": f"unused_published_convs.{k - 1}." for k in (1, 2, 3)},
    **{f"reduce_noise_channel_{k}.": f"unused_published_convs.{k + 2}." for k in (1, 2, 3)},
}


@official_mapping("promptir", "promptir_small", "promptir_tiny", "promptir_test")
def promptir_from_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """va1shn9v/PromptIR's ``PromptIR(decoder=True).state_dict()`` keys -> ours."""
    out = unet_from_official(state, _PROMPTIR_NAMES)
    for k in (1, 2, 3):  # the official prompt maps carry a leading batch axis of 1
        prompts = out.pop(f"prompt{k}.prompt_param", None)
        if prompts is not None:
            out[f"prompts.{k - 1}.generate.prompts"] = prompts.squeeze(0) if prompts.dim() == 5 else prompts
    return out
