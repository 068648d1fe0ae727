"""Building blocks: Restormer's layers and the two ExDA primitives."""

from exda.layers.attention import TransposedAttention, TransposedCrossAttention
from exda.layers.block import TransformerBlock
from exda.layers.ffn import GatedDconvFFN
from exda.layers.global_token import GLOBAL_TOKENS, GlobalSpatialToken, GlobalTokenKind, TokenOptions
from exda.layers.norm import LayerNorm2d
from exda.layers.sampling import Downsample, PatchEmbed, Upsample
from exda.layers.value_transform import VALUE_TRANSFORMS, NonlinearValue, ValueTransformKind

__all__ = [
    "GLOBAL_TOKENS",
    "VALUE_TRANSFORMS",
    "Downsample",
    "GatedDconvFFN",
    "GlobalSpatialToken",
    "GlobalTokenKind",
    "LayerNorm2d",
    "NonlinearValue",
    "PatchEmbed",
    "TokenOptions",
    "TransformerBlock",
    "TransposedAttention",
    "TransposedCrossAttention",
    "Upsample",
    "ValueTransformKind",
]
