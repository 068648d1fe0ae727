"""MoCE-IR (Zamfir et al., CVPR 2025): a mixture of complexity experts for all-in-one restoration.

    image -> PatchEmbed -> [Encoder_l -> Down] x3 -> Latent -> frequency embedding e ->
    [Up -> concat skip -> 1x1 fuse -> Decoder_l(e)] x3 -> Refinement -> 3x3 conv -> + image

Encoder, latent and refinement blocks are Restormer's (MDTA + GDFN with biases, with-bias layer norms).
A decoder block normalises x, projects it twice (1x1), runs MDTA on the first copy ("shared"), sends the
second through a mixture-of-experts adapter, and mixes the two with a transposed cross-attention (queries
from the adapter, keys/values from the shared path, 7x7 depthwise), then a GDFN.

The adapter routes each image (not each pixel) to its top-k experts: logits = linear(mean(x)) +
linear(e), where e is the latent features' high-pass (3x3 Laplacian, trainable) GELU mean through an MLP;
Gaussian noise (std 1 / experts) is added, and the top-k values of the noisy softmax are the gates (not
renormalised). Expert i works at rank dim / 2^(experts-1-i) with an FFT attention over p x p patches,
p = 4, 8, 16, 32: the circular convolution of q and k in each patch, layer-normed, times v. Training adds
a balance loss per adapter, 0.5 cv^2(importance) + 0.5 cv^2(load) (Shazeer et al. 2017), averaged over
the decoder blocks; the official script weights it 0.01 (``auxiliary_loss_weight``).

The official code also draws the routing noise at test time, so its outputs are random; here inference
is deterministic unless ``inference_noise=True`` (which reproduces it, e.g. for the equivalence check).
Its test path batches the experts of image 0 for every image; here each image uses its own experts,
which is the official result at batch size 1 (its test scripts' batch size) and in training.

``moce_ir_s`` / ``moce_ir`` are the configurations of the official training options (``MoCE_IR_S`` /
``MoCE_IR`` in src/options.py of eduardzamfir/MoCE-IR): dim 32 / 48, blocks (4, 6, 6, 8), decoder blocks
(2, 4, 4), 4 experts, top-1, rank "spread", depth "constant" 1, no complexity bias: 11,477,752 /
25,353,796 parameters. ``exda_moce_ir*`` turn on the two ExDA primitives in every MDTA (encoder, latent,
refinement and the decoders' shared path); the cross-attention and the experts stay as published.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import partial
from typing import Unpack

import torch
import torch.nn.functional as F
from torch import nn

from exda.layers import (
    LayerNorm2d,
    PatchEmbed,
    TransformerBlock,
    TransposedAttention,
    TransposedCrossAttention,
    Upsample,
)
from exda.layers.attention import wide
from exda.layers.ffn import GatedDconvFFN
from exda.layers.global_token import GlobalTokenKind, TokenKwargs, TokenOptions, token_options
from exda.layers.moe import normal_cdf, squared_cv
from exda.layers.value_transform import ValueTransformKind
from exda.models.official import StateDict, official_mapping
from exda.models.registry import ModelTraits, image_channels, model_options, register_model
from exda.models.unet import LEVELS, downsamples, encoder_stages, pad_to_multiple, stage, unet_widths


class PatchFFTAttention(nn.Module):
    """Per p x p patch (zero-padded at the border): irfft(rfft(q) * rfft(k)), layer-normed, times v, 1x1."""

    def __init__(self, dim: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.q = nn.Conv2d(dim, dim, kernel_size=1, bias=False)
        self.q_dwconv = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim)
        self.kv = nn.Conv2d(dim, dim * 2, kernel_size=1, bias=False)
        self.kv_dwconv = nn.Conv2d(dim * 2, dim * 2, kernel_size=7, padding=3, groups=dim * 2)
        self.norm = LayerNorm2d(dim)
        self.proj_out = nn.Conv2d(dim, dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.patch_size
        q = self.q_dwconv(self.q(x))
        k, v = self.kv_dwconv(self.kv(x)).chunk(2, dim=1)
        q, k = (self.to_patches(t.to(wide(t.dtype))) for t in (q, k))
        out = torch.fft.irfft2(torch.fft.rfft2(q) * torch.fft.rfft2(k), s=(p, p))
        rows, cols = out.shape[2], out.shape[3]
        out = out.permute(0, 1, 2, 4, 3, 5).reshape(b, c, rows * p, cols * p)[..., :h, :w]
        return self.proj_out(self.norm(out.to(v.dtype)) * v)

    def to_patches(self, x: torch.Tensor) -> torch.Tensor:
        """B x C x H x W -> B x C x rows x cols x p x p (zero-padded bottom/right)."""
        b, c, h, w = x.shape
        p = self.patch_size
        x = F.pad(x, (0, (-w) % p, 0, (-h) % p))
        return x.reshape(b, c, x.shape[2] // p, p, x.shape[3] // p, p).permute(0, 1, 2, 4, 3, 5)


class ComplexityExpert(nn.Module):
    """x + up(FFTAttention(down(x)) * silu(gate(shared))), at rank ``rank``."""

    def __init__(self, dim: int, rank: int, patch_size: int) -> None:
        super().__init__()
        self.down = nn.Conv2d(dim, rank, kernel_size=1, bias=False)
        self.gate = nn.Conv2d(dim, rank, kernel_size=1, bias=False)
        self.up = nn.Conv2d(rank, dim, kernel_size=1, bias=False)
        self.body = PatchFFTAttention(rank, patch_size)

    def forward(self, x: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.body(self.down(x)) * F.silu(self.gate(shared)))


class ComplexityRouter(nn.Module):
    """Noisy top-k routing of whole images from mean(x) and the frequency embedding.

    ``forward`` returns (gates B x experts, zero outside the top k; the balance loss or None).
    """

    def __init__(self, dim: int, freq_dim: int, complexity: torch.Tensor, top_k: int,
                 complexity_bias: bool = False, inference_noise: bool = False) -> None:
        super().__init__()
        experts = len(complexity)
        if not 1 <= top_k <= experts:
            raise ValueError(f"top_k must be in 1..{experts}, got {top_k}")
        self.top_k = top_k
        self.noise_std = 1.0 / experts
        self.complexity_bias = complexity_bias
        self.inference_noise = inference_noise
        self.gate = nn.Linear(dim, experts, bias=False)
        self.freq_gate = nn.Linear(freq_dim, experts, bias=False)
        # each expert's parameter count over the largest (weights the importance with complexity_bias)
        self.register_buffer("complexity", complexity / complexity.max())

    def forward(
        self, x: torch.Tensor, freq_emb: torch.Tensor, with_balance_loss: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self.gate(x.mean(dim=(-2, -1))) + self.freq_gate(freq_emb)
        noisy = logits
        if self.training or self.inference_noise:
            noisy = logits + torch.randn_like(logits) * self.noise_std
        top_values, top_index = noisy.softmax(dim=-1).topk(self.top_k, dim=-1)
        gates = torch.zeros_like(logits).scatter(1, top_index, top_values)
        if not (with_balance_loss and self.training):
            return gates, None
        importance = logits.softmax(dim=-1).sum(0)
        if self.complexity_bias:
            importance = importance * self.complexity
        threshold = noisy.gather(1, top_index[:, -1:])  # the k-th largest noisy logit of each image
        load = (1 - normal_cdf((threshold - logits) / self.noise_std)).mean(0)
        return gates, 0.5 * squared_cv(importance, "std") + 0.5 * squared_cv(load, "std")


class ExpertAdapter(nn.Module):
    """Mixture of complexity experts: each image through its top-k experts, gate-weighted, then 1x1."""

    def __init__(self, dim: int, freq_dim: int, experts: int = 4, top_k: int = 1,
                 complexity_bias: bool = False, inference_noise: bool = False) -> None:
        super().__init__()
        ranks = [dim // 2**i for i in reversed(range(experts))]  # the official rank type "spread"
        self.experts = nn.ModuleList(ComplexityExpert(dim, r, 2 ** (i + 2)) for i, r in enumerate(ranks))
        complexity = torch.tensor([sum(p.numel() for p in e.parameters()) for e in self.experts], dtype=torch.float32)
        self.routing = ComplexityRouter(dim, freq_dim, complexity, top_k, complexity_bias, inference_noise)
        self.proj_out = nn.Conv2d(dim, dim, kernel_size=1, bias=False)

    def forward(
        self, x: torch.Tensor, freq_emb: torch.Tensor, shared: torch.Tensor, with_balance_loss: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        gates, balance = self.routing(x, freq_emb, with_balance_loss)
        out = torch.zeros_like(x)
        for i, expert in enumerate(self.experts):
            if x.device.type == "meta":
                # Shapes only (FLOP counting): count the costliest experts, the top_k last.
                if i < len(self.experts) - self.routing.top_k:
                    continue
                rows = torch.arange(x.shape[0], device=x.device)
            else:
                rows = gates[:, i].nonzero().squeeze(1)
                if not len(rows):
                    continue
            y = expert(x.index_select(0, rows), shared.index_select(0, rows))
            out = out.index_add(0, rows, y * gates.index_select(0, rows)[:, i, None, None, None])
        return self.proj_out(out), balance


class ExpertDecoderBlock(nn.Module):
    """x + cross_attn(adapter(proj_a(LN(x))), MDTA(proj_s(LN(x)))); then x + GDFN(LN(x))."""

    def __init__(self, dim: int, heads: int, ffn_expansion: float, bias: bool, freq_dim: int, experts: int,
                 top_k: int, complexity_bias: bool, inference_noise: bool, value_transform: ValueTransformKind,
                 global_token: GlobalTokenKind, token: TokenOptions) -> None:
        super().__init__()
        self.norm1 = LayerNorm2d(dim)
        self.to_shared = nn.Conv2d(dim, dim, kernel_size=1)
        self.to_adapter = nn.Conv2d(dim, dim, kernel_size=1)
        self.shared_attn = TransposedAttention(dim, heads, bias, value_transform, global_token, token)
        self.adapter = ExpertAdapter(dim, freq_dim, experts, top_k, complexity_bias, inference_noise)
        self.cross_attn = TransposedCrossAttention(dim, heads, bias, kv_kernel=7)
        self.norm2 = LayerNorm2d(dim)
        self.ffn = GatedDconvFFN(dim, ffn_expansion, bias)

    def forward(
        self, x: torch.Tensor, freq_emb: torch.Tensor, with_balance_loss: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        normed = self.norm1(x)
        shared = self.shared_attn(self.to_shared(normed), x_in=x)
        adapted, balance = self.adapter(self.to_adapter(normed), freq_emb, shared, with_balance_loss)
        x = x + self.cross_attn(adapted, shared)
        return x + self.ffn(self.norm2(x)), balance


class FrequencyEmbedding(nn.Module):
    """MLP(mean(GELU(Laplacian(x)))): one vector per image from the latent features. The 3x3 Laplacian
    is depthwise and trainable (the official code means to freeze it, but its freeze is a no-op)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.high_pass = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim, bias=False)
        with torch.no_grad():
            laplacian = -torch.ones(3, 3)
            laplacian[1, 1] = 8
            self.high_pass.weight.copy_(laplacian.expand_as(self.high_pass.weight))
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(F.gelu(self.high_pass(x)).mean(dim=(-2, -1)))


class MoCEIR(nn.Module):
    """The network. ``forward`` takes and returns B x C x H x W in [0, 1], any H x W (reflect-padded to a
    multiple of 8, then cropped)."""

    auxiliary_loss_weight: float  # weight of the experts' balance loss in ``exda train``

    def __init__(
        self,
        in_channels: int = 3,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        num_dec_blocks: Sequence[int] = (2, 4, 4),
        num_refinement_blocks: int = 4,
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion: float = 2.0,
        bias: bool = False,
        experts: int = 4,
        top_k: int = 1,
        complexity_bias: bool = False,
        inference_noise: bool = False,
        auxiliary_loss_weight: float = 0.01,
        value_transform: ValueTransformKind = "off",
        global_token: GlobalTokenKind = "off",
        **token_args: Unpack[TokenKwargs],
    ) -> None:
        super().__init__()
        if dim % 2 ** (experts - 1):
            raise ValueError(f"dim {dim} must be divisible by 2^(experts-1) = {2 ** (experts - 1)}")
        self.in_channels = image_channels(in_channels)
        self.auxiliary_loss_weight = auxiliary_loss_weight
        widths = unet_widths(dim)
        exda_kw = dict(value_transform=value_transform, global_token=global_token,
                       token=token_options(**token_args))
        block = partial(TransformerBlock, ffn_expansion=ffn_expansion, bias=True, **exda_kw)  # biases, encoder-side

        self.patch_embed = PatchEmbed(in_channels, dim)
        self.encoders = encoder_stages(block, dim, heads, num_blocks)
        self.downs = downsamples(dim)
        self.latent = stage(block, widths[-1], heads[-1], num_blocks[-1])
        self.freq_embed = FrequencyEmbedding(widths[-1])
        # Decoder steps in the official order, index 0 = the deepest (arriving at level 3).
        arrive = list(reversed(range(LEVELS - 1)))
        self.ups = nn.ModuleList(Upsample(widths[j + 1]) for j in arrive)
        self.fusions = nn.ModuleList(nn.Conv2d(widths[j + 1], widths[j], kernel_size=1, bias=bias) for j in arrive)
        self.decoders = nn.ModuleList(
            nn.ModuleList(ExpertDecoderBlock(widths[j], heads[j], ffn_expansion, bias, widths[-1], experts, top_k,
                                             complexity_bias, inference_noise, **exda_kw)
                          for _ in range(num_dec_blocks[j]))
            for j in arrive
        )
        self.refinement = stage(block, dim, heads[0], num_refinement_blocks)
        self.output = nn.Conv2d(dim, in_channels, kernel_size=3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._restore(x, with_balance_loss=False)[0]

    def restore_with_auxiliary_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The restored image and the experts' mean balance loss (0 in eval) times ``auxiliary_loss_weight``
        (None when the weight is 0)."""
        if not self.auxiliary_loss_weight:
            return self(x), None
        out, balance = self._restore(x, with_balance_loss=True)
        return out, self.auxiliary_loss_weight * balance.to(wide(balance.dtype))

    def _restore(self, x: torch.Tensor, with_balance_loss: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The restored image and, ``with_balance_loss``, the adapters' mean balance loss (0 in eval)."""
        h, w = x.shape[-2:]
        padded = pad_to_multiple(x)
        feats, skips = self.patch_embed(padded), []
        for encoder, down in zip(self.encoders, self.downs, strict=True):
            feats = encoder(feats)
            skips.append(feats)
            feats = down(feats)
        feats = self.latent(feats)
        freq_emb = self.freq_embed(feats)
        balance = []
        for up, fusion, blocks in zip(self.ups, self.fusions, self.decoders, strict=True):
            feats = fusion(torch.cat([up(feats), skips.pop()], dim=1))
            for block in blocks:
                feats, loss = block(feats, freq_emb, with_balance_loss)
                balance.append(loss)
        out = (self.output(self.refinement(feats)) + padded)[..., :h, :w]
        if not with_balance_loss:
            return out, None
        losses = [loss for loss in balance if loss is not None]
        return out, (torch.stack(losses).sum() / len(balance) if losses else out.new_zeros(()))


SIZES: dict[str, dict] = {
    "base": dict(dim=48),
    "small": dict(dim=32),
    # top_k = experts so that one image trains every expert (the contract test checks all gradients)
    "test": dict(dim=8, num_blocks=(1, 1, 1, 1), num_dec_blocks=(1, 1, 1), num_refinement_blocks=1,
                 heads=(1, 1, 2, 2), experts=2, top_k=2),
}

TRAITS = ModelTraits(auxiliary_loss=True,
                     onnx_unsupported="its experts' attention uses torch.fft, which the ONNX exporter does not support")


def build(size: str, exda: bool, **kwargs) -> MoCEIR:
    """A MoCE-IR of a named size; ``exda=True`` turns both primitives on (each still overridable)."""
    return MoCEIR(**model_options(SIZES[size], exda, kwargs))


@register_model(traits=TRAITS)
def moce_ir(**kwargs) -> MoCEIR:
    return build("base", exda=False, **kwargs)


@register_model(traits=TRAITS)
def moce_ir_s(**kwargs) -> MoCEIR:
    return build("small", exda=False, **kwargs)


@register_model(traits=TRAITS)
def moce_ir_test(**kwargs) -> MoCEIR:
    return build("test", exda=False, **kwargs)


@register_model(traits=TRAITS)
def exda_moce_ir(**kwargs) -> MoCEIR:
    return build("base", exda=True, **kwargs)


@register_model(traits=TRAITS)
def exda_moce_ir_s(**kwargs) -> MoCEIR:
    return build("small", exda=True, **kwargs)


@register_model(traits=TRAITS)
def exda_moce_ir_test(**kwargs) -> MoCEIR:
    return build("test", exda=True, **kwargs)


_RENAMES = [
    (re.compile(r"^enc\.(\d+)\.0\.layers\."), r"encoders.\1."), (re.compile(r"^enc\.(\d+)\.1\."), r"downs.\1."),
    (re.compile(r"^(latent|refinement)\.layers\."), r"\1."),
    (re.compile(r"^dec\.(\d+)\.0\."), r"ups.\1."), (re.compile(r"^dec\.(\d+)\.1\."), r"fusions.\1."),
    (re.compile(r"^dec\.(\d+)\.2\.layers\."), r"decoders.\1."),
    (re.compile(r"\.norms\.([01])\.body\."), lambda m: f".norm{int(m.group(1)) + 1}."),
    (re.compile(r"^(encoders\.\d+\.\d+|latent\.\d+|refinement\.\d+)\.mixer\."), r"\1.attn."),
    (re.compile(r"^(decoders\.\d+\.\d+)\.mixer\."), r"\1.cross_attn."),
    (re.compile(r"\.shared\."), ".shared_attn."),
    (re.compile(r"^(decoders\.\d+\.\d+)\.proj\.0\."), r"\1.to_shared."),
    (re.compile(r"^(decoders\.\d+\.\d+)\.proj\.1\."), r"\1.to_adapter."),
    (re.compile(r"\.experts\.(\d+)\.0\.proj\.0\."), r".experts.\1.down."),
    (re.compile(r"\.experts\.(\d+)\.0\.proj\.1\."), r".experts.\1.gate."),
    (re.compile(r"\.experts\.(\d+)\.0\.proj\.2\."), r".experts.\1.up."),
    (re.compile(r"\.experts\.(\d+)\.0\.body\.norm\.body\."), r".experts.\1.body.norm."),
    (re.compile(r"\.experts\.(\d+)\.0\.body\."), r".experts.\1.body."),
    (re.compile(r"\.routing\.gate\.2\."), ".routing.gate."),
    (re.compile(r"^freq_embed\.high_conv\.0\.conv\."), "freq_embed.high_pass."),
]


@official_mapping("moce_ir_s", "moce_ir")
def moce_ir_from_official(state: StateDict) -> StateDict:
    """The official ``MoCEIR.state_dict()`` keys -> ours (tensors unchanged). Unknown keys are kept, so the
    loader's strict check names them."""
    mapped = {}
    for key, tensor in state.items():
        for pattern, repl in _RENAMES:
            key = pattern.sub(repl, key, count=1)
        mapped[key] = tensor
    return mapped
