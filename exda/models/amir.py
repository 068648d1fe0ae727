"""AMIR (Yang et al., MICCAI 2024): all-in-one medical image restoration via task-adaptive routing.

    image -> RIN (routing instruction: a softmax mix of learned atoms, from a small strided CNN)
    image -> PatchEmbed -> [spatial routing (MoE) -> Encoder_l -> Down] x3 -> channel routing -> Latent ->
    [Up -> concat skip -> reduce -> channel routing -> Decoder_l] x3 -> Refinement -> 3x3 conv -> + image

The transformer blocks are Restormer's (MDTA + GDFN, with-bias layer norms). Spatial routing sends
every pixel through the top 2 of 4 MLP experts chosen by noisy top-k gating on [pixel, instruction]
(Shazeer et al. 2017), combined in log space as the official code does: log(sum_i g_i exp(e_i(x)));
its load-balancing loss is returned for training (``restore_with_auxiliary_loss``). Channel routing is
x + (x * gamma + beta) * sigmoid(fc(instruction)). ``amir`` is the configuration of the official training script
(``main_train_AMIR.py`` of Yaziwel/All-In-One-Medical-Image-Restoration-via-Task-Adaptive-Routing):
1 channel, dim 42, blocks (5, 7, 7, 9), 4 refinement blocks: 23,540,498 parameters.

``exda_amir`` turns on the two ExDA primitives in every transformer block's attention, which is
Restormer's transposed attention unchanged, so they enter exactly as in ``exda_restormer``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import partial
from typing import Unpack

import torch
import torch.nn.functional as F
from torch import nn

from exda.layers import PatchEmbed, TransformerBlock
from exda.layers.attention import wide
from exda.layers.global_token import GlobalTokenKind, TokenKwargs, token_options
from exda.layers.moe import normal_cdf, squared_cv
from exda.layers.value_transform import ValueTransformKind
from exda.models.official import StateDict, official_config, official_mapping
from exda.models.registry import ModelTraits, image_channels, model_options, register_model
from exda.models.unet import (
    LEVELS,
    decoder_stages,
    decoder_width,
    downsamples,
    encoder_stages,
    pad_to_multiple,
    reductions,
    stage,
    unet_from_official,
    unet_widths,
    upsamples,
)

NOISE_EPS = 1e-2  # floor of the gating noise's standard deviation


class ExpertMLP(nn.Module):
    """One expert: Linear -> GELU -> Linear on pixel vectors."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class PixelMixtureOfExperts(nn.Module):
    """Sparse per-pixel mixture of MLP experts with noisy top-k gating on [pixel, context] vectors.

    ``forward`` returns (B x C x H x W, the load-balancing loss cv^2(importance) + cv^2(load) or None).
    Gating noise is drawn in training only, as in the official code.
    """

    def __init__(self, dim: int, expansion: float, experts: int = 4, top_k: int = 2) -> None:
        super().__init__()
        if not 1 <= top_k <= experts:
            raise ValueError(f"top_k must be in 1..{experts}, got {top_k}")
        self.top_k = top_k
        self.experts = nn.ModuleList(ExpertMLP(dim, int(dim * expansion)) for _ in range(experts))
        self.w_gate = nn.Parameter(torch.randn(2 * dim, experts))
        self.w_noise = nn.Parameter(torch.zeros(2 * dim, experts))

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, with_balance_loss: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, c, h, w = x.shape
        pixels = x.permute(0, 2, 3, 1).reshape(b * h * w, c)
        gating_input = torch.cat([pixels, context[:, None, :].expand(b, h * w, c).reshape(b * h * w, c)], dim=1)
        clean = gating_input @ self.w_gate
        noise_std = None
        logits = clean
        if self.training:
            noise_std = F.softplus(gating_input @ self.w_noise) + NOISE_EPS
            logits = clean + torch.randn_like(clean) * noise_std
        experts, k = len(self.experts), self.top_k
        top_logits, top_index = logits.topk(min(k + 1, experts), dim=1)
        gates = torch.zeros_like(logits).scatter(1, top_index[:, :k], top_logits[:, :k].softmax(dim=1))
        out = self._combine(pixels, gates).reshape(b, h, w, c).permute(0, 3, 1, 2)
        if not with_balance_loss:
            return out, None
        if noise_std is not None and k < experts:  # smooth estimate of each expert's load
            threshold_in, threshold_out = top_logits[:, k:k + 1], top_logits[:, k - 1:k]
            load = torch.where(logits > threshold_in, normal_cdf((clean - threshold_in) / noise_std),
                               normal_cdf((clean - threshold_out) / noise_std)).sum(0)
        else:
            load = (gates > 0).sum(0)
        return out, squared_cv(gates.sum(0), "variance") + squared_cv(load, "variance")

    def _combine(self, pixels: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        """log(sum_i g_i exp(expert_i(x))) over the experts with a non-zero gate, each run only on its
        pixels (in the official expert order, so sums add up in the same order)."""
        acc = wide(pixels.dtype)
        combined = pixels.new_zeros(pixels.shape, dtype=acc)
        for i, expert in enumerate(self.experts):
            if pixels.device.type == "meta":
                # Shapes only (FLOP counting): every pixel goes to top_k experts, and an expert's cost is
                # linear in its rows, so an even split counts the same total.
                rows = torch.arange(len(pixels) * self.top_k // len(self.experts), device=pixels.device)
            else:
                rows = gates[:, i].nonzero().squeeze(1)
            weighted = expert(pixels.index_select(0, rows)).to(acc).exp() * gates.index_select(0, rows)[:, i:i + 1]
            combined = combined.index_add(0, rows, weighted.to(acc))
        return torch.where(combined == 0, torch.finfo(torch.float64).eps, combined).log()


class SpatialRouting(nn.Module):
    """x + MoE(x | fc(instruction))."""

    def __init__(self, atom_dim: int, dim: int, expansion: float, experts: int, top_k: int) -> None:
        super().__init__()
        self.fc = nn.Linear(atom_dim, dim)
        self.moe = PixelMixtureOfExperts(dim, expansion, experts, top_k)

    def forward(
        self, x: torch.Tensor, instruction: torch.Tensor, with_balance_loss: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        out, balance = self.moe(x, self.fc(instruction), with_balance_loss)
        return out + x, balance


class ChannelRouting(nn.Module):
    """x + (x * gamma + beta) * sigmoid(fc(instruction)); gamma and beta start at zero."""

    def __init__(self, atom_dim: int, dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(atom_dim, dim)
        self.beta = nn.Parameter(torch.zeros(1, dim, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, dim, 1, 1))

    def forward(self, x: torch.Tensor, instruction: torch.Tensor) -> torch.Tensor:
        gate = self.fc(instruction).sigmoid()[:, :, None, None]
        return x + (x * self.gamma + self.beta) * gate


class RoutingInstruction(nn.Module):
    """RIN: two 3x3 stride-3 convs and three 1x1 convs (LeakyReLU 0.1), global average pooling, a linear
    map to atom logits, softmax, the mix of learned atoms, GELU: one vector per image (B x atom_dim)."""

    def __init__(self, in_channels: int, atoms: int, atom_dim: int, hidden: int = 64, out: int = 32) -> None:
        super().__init__()
        act = nn.LeakyReLU(0.1)
        self.cond = nn.Sequential(nn.Conv2d(in_channels, hidden, 3, 3), act, nn.Conv2d(hidden, hidden, 3, 3), act,
                                  nn.Conv2d(hidden, hidden, 1), act, nn.Conv2d(hidden, hidden, 1), act,
                                  nn.Conv2d(hidden, out, 1))
        self.to_atoms = nn.Linear(out, atoms)
        self.atoms = nn.Parameter(torch.randn(atoms, atom_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.to_atoms(self.cond(x).mean(dim=(-2, -1))).softmax(dim=-1)
        return F.gelu(weights @ self.atoms)


class AMIR(nn.Module):
    """The network. ``forward`` takes and returns B x C x H x W in [0, 1], any H x W (reflect-padded to a
    multiple of 8 and at least 16, which the instruction network's two stride-3 convs need, then cropped)."""

    auxiliary_loss_weight: float  # weight of the experts' load-balancing loss in ``exda train``

    def __init__(
        self,
        in_channels: int = 1,
        dim: int = 42,
        num_blocks: Sequence[int] = (5, 7, 7, 9),
        num_refinement_blocks: int = 4,
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion: float = 2.66,
        bias: bool = False,
        atoms: int = 32,
        atom_dim: int = 256,
        instruction_hidden: int = 64,
        experts: int = 4,
        top_k: int = 2,
        auxiliary_loss_weight: float = 0.001,
        value_transform: ValueTransformKind = "off",
        global_token: GlobalTokenKind = "off",
        **token_args: Unpack[TokenKwargs],
    ) -> None:
        super().__init__()
        self.in_channels = image_channels(in_channels)
        self.auxiliary_loss_weight = auxiliary_loss_weight
        widths = unet_widths(dim)
        block = partial(TransformerBlock, ffn_expansion=ffn_expansion, bias=bias, value_transform=value_transform,
                        global_token=global_token, token=token_options(**token_args))
        self.instruction = RoutingInstruction(in_channels, atoms, atom_dim, instruction_hidden)
        self.patch_embed = PatchEmbed(in_channels, dim)
        self.encoder_routes = nn.ModuleList(
            SpatialRouting(atom_dim, width, ffn_expansion, experts, top_k) for width in widths[:-1]
        )
        self.encoders = encoder_stages(block, dim, heads, num_blocks)
        self.downs = downsamples(dim)
        self.latent_route = ChannelRouting(atom_dim, widths[-1])
        self.latent = stage(block, widths[-1], heads[-1], num_blocks[-1])
        self.ups = upsamples(dim)
        self.reduces = reductions(dim, bias)
        self.decoder_routes = nn.ModuleList(ChannelRouting(atom_dim, decoder_width(dim, j)) for j in range(LEVELS - 1))
        self.decoders = decoder_stages(block, dim, heads, num_blocks)
        self.refinement = stage(block, 2 * dim, heads[0], num_refinement_blocks)
        self.output = nn.Conv2d(2 * dim, in_channels, kernel_size=3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._restore(x, with_balance_loss=False)[0]

    def restore_with_auxiliary_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The restored image and the summed load-balancing loss times ``auxiliary_loss_weight`` (None when
        the weight is 0)."""
        if not self.auxiliary_loss_weight:
            return self(x), None
        out, balance = self._restore(x, with_balance_loss=True)
        return out, self.auxiliary_loss_weight * balance.to(wide(balance.dtype))

    def _restore(self, x: torch.Tensor, with_balance_loss: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The restored image and, ``with_balance_loss``, the spatial routings' summed balance loss."""
        h, w = x.shape[-2:]
        padded = pad_to_multiple(x, minimum=16)
        instruction = self.instruction(padded)
        feats, skips, balance = self.patch_embed(padded), [], []
        for route, encoder, down in zip(self.encoder_routes, self.encoders, self.downs, strict=True):
            feats, loss = route(feats, instruction, with_balance_loss)
            balance.append(loss)
            feats = encoder(feats)
            skips.append(feats)
            feats = down(feats)
        feats = self.latent(self.latent_route(feats, instruction))
        for j in reversed(range(LEVELS - 1)):
            feats = self.reduces[j](torch.cat([self.ups[j](feats), skips[j]], dim=1))
            feats = self.decoders[j](self.decoder_routes[j](feats, instruction))
        out = (self.output(self.refinement(feats)) + padded)[..., :h, :w]
        return out, torch.stack(balance).sum() if with_balance_loss else None


SIZES: dict[str, dict] = {
    "base": dict(dim=42, num_blocks=(5, 7, 7, 9), num_refinement_blocks=4, heads=(1, 2, 4, 8)),
    "test": dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 2, 2),
                 atoms=4, atom_dim=16, instruction_hidden=8),
}

TRAITS = ModelTraits(in_channels=1, auxiliary_loss=True)


def build(size: str, exda: bool, **kwargs) -> AMIR:
    """An AMIR of a named size; ``exda=True`` turns both primitives on (each still overridable)."""
    return AMIR(**model_options(SIZES[size], exda, kwargs))


@register_model(traits=TRAITS)
def amir(**kwargs) -> AMIR:
    return build("base", exda=False, **kwargs)


@register_model(traits=TRAITS)
def amir_test(**kwargs) -> AMIR:
    return build("test", exda=False, **kwargs)


@register_model(traits=TRAITS)
def exda_amir(**kwargs) -> AMIR:
    return build("base", exda=True, **kwargs)


@register_model(traits=TRAITS)
def exda_amir_test(**kwargs) -> AMIR:
    return build("test", exda=True, **kwargs)


# Official names beyond Restormer's (model/Model_AMIR.py): the routing instruction and the routings.
_OFFICIAL_NAMES = {"dict_generator.CondNet.": "instruction.cond.", "dict_generator.lastOut.": "instruction.to_atoms.",
                   "dict_generator.dictionary": "instruction.atoms", "channel_routing_latent.": "latent_route.",
                   **{f"spatial_routing_encoder_level{k}.": f"encoder_routes.{k - 1}." for k in (1, 2, 3)},
                   **{f"channel_routing_decoder_level{k}.": f"decoder_routes.{k - 1}." for k in (1, 2, 3)}}
# The MoE's standard-normal constants (buffers ``mean`` = 0, ``std`` = 1) are not parameters here.
_CONSTANT_RE = re.compile(r"\.moe\.(mean|std)$")


@official_config("amir")
def amir_official_config(state: StateDict) -> dict:
    """The official script trains on 1-channel slices; a 3-channel file is read as such."""
    embed = state.get("patch_embed.proj.weight")
    return {} if embed is None else {"in_channels": embed.shape[1]}


@official_mapping("amir")
def amir_from_official(state: StateDict) -> StateDict:
    """The official ``AMIR.state_dict()`` keys -> ours (tensors unchanged; the MoE's constant ``mean`` /
    ``std`` buffers dropped). Unknown keys are kept, so the loader's strict check names them."""
    return unet_from_official({k: v for k, v in state.items() if not _CONSTANT_RE.search(k)}, _OFFICIAL_NAMES)
