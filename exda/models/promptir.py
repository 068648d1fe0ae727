"""PromptIR (Restormer + prompt stages in the decoder) and its ExDA version.

``promptir`` reproduces PromptIR's published parameter count, 35,592,263, which includes 215,296
parameters of six convolutions the original never calls; they are kept (``unused_published_convs``)
only for that count and receive no gradient. The smaller sizes and the ExDA versions leave them out,
so ExDA overheads are measured against ``promptir(prompts=PROMPTS["base"])``, the live network.
"""

from __future__ import annotations

import torch

from exda.models.official import official_mapping, rename_prefixes
from exda.models.registry import register_model
from exda.models.restormer import PromptSpec, RestormerUNet, build, restormer_from_official

# Prompt widths per size; each (decoder width + prompt width) must divide by the mixing block's heads.
PROMPTS: dict[str, PromptSpec] = {
    "base": PromptSpec(),
    "small": PromptSpec(dims=(40, 88, 216)),
    "tiny": PromptSpec(dims=(24, 40, 104)),
    "test": PromptSpec(dims=(8, 16, 40), sizes=(16, 8, 4)),
}


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


# Official code (va1shn9v/PromptIR, net/model.py, PromptIR(decoder=True)) -> these modules, beyond
# Restormer's names: prompt stage k (1 = shallowest) and the six never-called convolutions.
_PROMPTIR_NAMES = {
    **{f"prompt{k}.linear_layer.": f"prompts.{k - 1}.generate.select." for k in (1, 2, 3)},
    **{f"prompt{k}.conv3x3.": f"prompts.{k - 1}.generate.conv." for k in (1, 2, 3)},
    **{f"noise_level{k}.": f"prompts.{k - 1}.mix." for k in (1, 2, 3)},
    **{f"reduce_noise_level{k}.": f"prompts.{k - 1}.reduce." for k in (1, 2, 3)},
    **{f"chnl_reduce{k}.": f"unused_published_convs.{k - 1}." for k in (1, 2, 3)},
    **{f"reduce_noise_channel_{k}.": f"unused_published_convs.{k + 2}." for k in (1, 2, 3)},
}


@official_mapping("promptir")
def promptir_from_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = restormer_from_official(rename_prefixes(state, _PROMPTIR_NAMES))
    for k in (1, 2, 3):  # the official prompt maps carry a leading batch axis of 1
        prompts = out.pop(f"prompt{k}.prompt_param", None)
        if prompts is not None:
            out[f"prompts.{k - 1}.generate.prompts"] = prompts.squeeze(0) if prompts.dim() == 5 else prompts
    return out
