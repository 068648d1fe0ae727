"""PromptIR (Restormer + prompt stages in the decoder) and its ExDA version.

``promptir`` reproduces PromptIR's published parameter count, 35,592,263, which includes 215,296
parameters of six convolutions the original never calls; they are kept (``unused_published_convs``)
only for that count and receive no gradient. The smaller sizes and the ExDA versions leave them out,
so ExDA overheads are measured against ``promptir(prompts=PROMPTS["base"])``, the live network.
"""

from __future__ import annotations

from exda.models.registry import register_model
from exda.models.restormer import PromptSpec, RestormerUNet, build

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
