"""AirNet (Li et al., CVPR 2022): all-in-one restoration guided by a contrastively learned degradation code.

    image -> DegradationEncoder (ResBlocks; MoCo query branch) -> degradation map "inter"
    image -> head conv -> [DGG: [DGB: DGM -> conv -> DGM -> conv] x5 -> conv] x5 -> conv -> + -> tail conv

CBDE (contrast-based degradation encoder) is a MoCo pair of small ResNet encoders: the query encoder's
full-resolution first block gives the degradation map that every DGM (degradation-guided module: a
deformable convolution whose offsets and masks are predicted from the features and the map, plus an
SFT modulation) reads; its pooled, projected embedding is trained with an InfoNCE loss against a
momentum key encoder and a queue of negatives. ``airnet`` is the official configuration of
XLearning-SCU/2022-CVPR-AirNet (5 degradation types, so a queue of 5 * 256 keys): 8,930,313 parameters,
1,319,936 of them in the frozen key encoder.

Like the official network, the restorer predicts the image (no image-level skip); the features skip
over the body. The official code runs the whole query encoder at inference and discards the
embedding; here only the part the restorer reads runs (same output, fewer FLOPs).

Training (``restore_with_auxiliary_loss(x)``) returns the InfoNCE loss too, times ``auxiliary_loss_weight``
(0.1, as the official joint stage), which ``exda train`` adds to its loss. The official positive key is a
second 128 px patch of the same degraded image; exda's loader yields one patch per image, so the key
here is a random half-size crop of the same degraded patch. The official encoder-only first stage
(100 epochs of the InfoNCE loss alone) is not reproduced (docs/peers.md).
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from exda.layers.attention import wide
from exda.layers.deform_conv import ModulatedDeformConv2d
from exda.models.official import StateDict, official_config, official_mapping
from exda.models.registry import ModelTraits, image_channels, register_model

SLOPE = 0.1  # every LeakyReLU in AirNet


def conv(in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


class ResBlock(nn.Module):
    """Two 3x3 conv-BN layers (the first may stride) plus a 1x1 conv-BN shortcut, LeakyReLU after the sum."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(SLOPE),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.body(x) + self.shortcut(x), SLOPE)


class DegradationEncoder(nn.Module):
    """One MoCo branch: a full-resolution ResBlock (the degradation map), two strided ResBlocks, average
    pooling (the embedding) and a 2-layer MLP projection (what the contrastive loss compares)."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int], dim: int) -> None:
        super().__init__()
        self.pre = ResBlock(in_channels, widths[0])
        self.down = nn.Sequential(ResBlock(widths[0], widths[1], stride=2), ResBlock(widths[1], widths[2], stride=2))
        self.project = nn.Sequential(nn.Linear(widths[2], dim), nn.LeakyReLU(SLOPE), nn.Linear(dim, dim))

    def projection(self, feature_map: torch.Tensor) -> torch.Tensor:
        """The MLP projection of the pooled embedding of ``pre``'s output (B x dim)."""
        return self.project(self.down(feature_map).mean(dim=(-2, -1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.pre(x))


class ContrastiveEncoder(nn.Module):
    """CBDE: a query encoder trained by InfoNCE (MoCo v1) against a momentum key encoder (no gradient)
    and a queue of past keys, which the loss updates."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int], dim: int, queue_size: int,
                 momentum: float = 0.999, temperature: float = 0.07) -> None:
        super().__init__()
        self.momentum, self.temperature = momentum, temperature
        self.query = DegradationEncoder(in_channels, widths, dim)
        self.key = DegradationEncoder(in_channels, widths, dim)
        self.key.load_state_dict(self.query.state_dict())
        self.key.requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(dim, queue_size), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The degradation map the restorer reads (B x widths[0] x H x W)."""
        return self.query.pre(x)

    def contrastive_loss(self, feature_map: torch.Tensor, key_image: torch.Tensor) -> torch.Tensor:
        """InfoNCE of the query embedding (from its ``feature_map``) against the key image's embedding
        (positive) and the queue (negatives); moves the key encoder and enqueues the keys."""
        q = F.normalize(self.query.projection(feature_map), dim=1)
        with torch.no_grad():
            for p_q, p_k in zip(self.query.parameters(), self.key.parameters(), strict=True):
                p_k.mul_(self.momentum).add_(p_q.detach(), alpha=1 - self.momentum)
            k = F.normalize(self.key(key_image), dim=1).to(q.dtype)
        negatives = self.queue.clone().to(q.dtype)  # a copy: the queue is written below, after use
        logits = torch.cat([(q * k).sum(dim=1, keepdim=True), q @ negatives], dim=1) / self.temperature
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        loss = F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))
        with torch.no_grad():
            size = self.queue.shape[1]
            slots = (self.queue_ptr + torch.arange(len(k), device=k.device)) % size
            self.queue[:, slots] = k.T.to(self.queue.dtype)
            self.queue_ptr.copy_((self.queue_ptr + len(k)) % size)
        return loss


class SpatialFeatureTransform(nn.Module):
    """SFT: x * gamma(map) + beta(map), each a 1x1 conv -> LeakyReLU -> 1x1 conv (no biases)."""

    def __init__(self, channels: int, map_channels: int) -> None:
        super().__init__()

        def branch() -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(map_channels, channels, 1, bias=False), nn.LeakyReLU(SLOPE),
                                 nn.Conv2d(channels, channels, 1, bias=False))

        self.gamma, self.beta = branch(), branch()

    def forward(self, x: torch.Tensor, degradation: torch.Tensor) -> torch.Tensor:
        return x * self.gamma(degradation) + self.beta(degradation)


class GuidedDeformConv(nn.Module):
    """A DCN v2 whose offsets and masks a 3x3 conv predicts from [features, degradation map]; that conv
    starts at zero (offsets 0, masks 0.5), as in the official code."""

    def __init__(self, channels: int, map_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        taps = kernel_size * kernel_size
        self.offset_mask = conv(channels + map_channels, 3 * taps, kernel_size)
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)
        self.deform = ModulatedDeformConv2d(channels, channels, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor, degradation: torch.Tensor) -> torch.Tensor:
        offset_y_x, offset_rest, mask = self.offset_mask(torch.cat([x, degradation], dim=1)).chunk(3, dim=1)
        return self.deform(x, torch.cat([offset_y_x, offset_rest], dim=1), mask.sigmoid())


class DegradationGuidedModule(nn.Module):
    """DGM: x + DCN(x | map) + SFT(x | map)."""

    def __init__(self, channels: int, map_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.dcn = GuidedDeformConv(channels, map_channels, kernel_size)
        self.sft = SpatialFeatureTransform(channels, map_channels)

    def forward(self, x: torch.Tensor, degradation: torch.Tensor) -> torch.Tensor:
        return x + (self.dcn(x, degradation) + self.sft(x, degradation))


class DegradationGuidedBlock(nn.Module):
    """DGB: DGM -> act -> conv -> act -> DGM -> act -> conv, plus the block input."""

    def __init__(self, channels: int, map_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.dgm1 = DegradationGuidedModule(channels, map_channels, kernel_size)
        self.conv1 = conv(channels, channels, kernel_size)
        self.dgm2 = DegradationGuidedModule(channels, map_channels, kernel_size)
        self.conv2 = conv(channels, channels, kernel_size)

    def forward(self, x: torch.Tensor, degradation: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.dgm1(x, degradation), SLOPE)
        out = F.leaky_relu(self.conv1(out), SLOPE)
        out = F.leaky_relu(self.dgm2(out, degradation), SLOPE)
        return self.conv2(out) + x


class DegradationGuidedGroup(nn.Module):
    """DGG: a run of DGBs and a conv, plus the group input."""

    def __init__(self, channels: int, map_channels: int, blocks: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(DegradationGuidedBlock(channels, map_channels, kernel_size) for _ in range(blocks))
        self.conv = conv(channels, channels, kernel_size)

    def forward(self, x: torch.Tensor, degradation: torch.Tensor) -> torch.Tensor:
        out = x
        for block in self.blocks:
            out = block(out, degradation)
        return self.conv(out) + x


class AirNet(nn.Module):
    """The network. ``forward`` takes and returns B x C x H x W in [0, 1], any H x W (fully convolutional
    at full resolution, so no padding)."""

    auxiliary_loss_weight: float  # weight of the InfoNCE loss in ``exda train``

    def __init__(
        self,
        in_channels: int = 3,
        dim: int = 64,
        groups: int = 5,
        blocks: int = 5,
        encoder_widths: tuple[int, int, int] = (64, 128, 256),
        embed_dim: int = 256,
        queue_size: int = 5 * 256,
        auxiliary_loss_weight: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_channels = image_channels(in_channels)
        self.auxiliary_loss_weight = auxiliary_loss_weight
        widths = tuple(encoder_widths)
        self.encoder = ContrastiveEncoder(in_channels, widths, embed_dim, queue_size)
        self.head = conv(in_channels, dim)
        self.groups = nn.ModuleList(DegradationGuidedGroup(dim, widths[0], blocks) for _ in range(groups))
        self.body_conv = conv(dim, dim)
        self.tail = conv(dim, in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._restore(x, self.encoder.feature_map(x))

    def restore_with_auxiliary_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The restored image and the encoder's InfoNCE loss times ``auxiliary_loss_weight`` (None when the
        weight is 0). The loss updates the key encoder and the queue, so call this once per training step."""
        if not self.auxiliary_loss_weight:
            return self(x), None
        degradation = self.encoder.feature_map(x)
        restored = self._restore(x, degradation)
        loss = self.encoder.contrastive_loss(degradation, random_half_crops(x))
        return restored, self.auxiliary_loss_weight * loss.to(wide(loss.dtype))

    def _restore(self, x: torch.Tensor, degradation: torch.Tensor) -> torch.Tensor:
        """The restorer, guided by the degradation map."""
        feats = self.head(x)
        out = feats
        for group in self.groups:
            out = group(out, degradation)
        return self.tail(self.body_conv(out) + feats)


def random_half_crops(x: torch.Tensor) -> torch.Tensor:
    """An independent random crop of half the height and width from each image of the batch."""
    h, w = x.shape[-2:]
    ch, cw = max(1, h // 2), max(1, w // 2)
    tops = torch.randint(0, h - ch + 1, (len(x),)).tolist()
    lefts = torch.randint(0, w - cw + 1, (len(x),)).tolist()
    return torch.stack([img[:, t:t + ch, s:s + cw] for img, t, s in zip(x, tops, lefts, strict=True)])


SIZES: dict[str, dict] = {
    "base": dict(dim=64, groups=5, blocks=5, encoder_widths=(64, 128, 256), embed_dim=256, queue_size=5 * 256),
    "test": dict(dim=8, groups=1, blocks=1, encoder_widths=(8, 8, 16), embed_dim=16, queue_size=32),
}

TRAITS = ModelTraits(auxiliary_loss=True)


@register_model(traits=TRAITS)
def airnet(**kwargs) -> AirNet:
    return AirNet(**{**SIZES["base"], **kwargs})


@register_model(traits=TRAITS)
def airnet_test(**kwargs) -> AirNet:
    return AirNet(**{**SIZES["test"], **kwargs})


_ENCODER_PARTS = [("E.E.encoder_q.", "encoder.query."), ("E.E.encoder_k.", "encoder.key."),
                  ("E.E.queue", "encoder.queue"), ("R.head.0.", "head."), ("R.tail.0.", "tail.")]
_BRANCH_PARTS = [(".E_pre.backbone.", ".pre.body."), (".E_pre.shortcut.", ".pre.shortcut."),
                 (".backbone.", ".body."), (".mlp.", ".project.")]
_BLOCK_PARTS = [(".dcn.conv_offset_mask.", ".dcn.offset_mask."), (".dcn.weight", ".dcn.deform.weight"),
                (".sft.conv_gamma.", ".sft.gamma."), (".sft.conv_beta.", ".sft.beta.")]
_BODY_RE = re.compile(r"^R\.body\.(\d+)\.(?:body\.(\d+)\.)?")
_DOWN_RE = re.compile(r"^(encoder\.(?:query|key))\.E\.(\d+)\.")


@official_config("airnet")
def airnet_official_config(state: StateDict) -> dict:
    """The published checkpoints' MoCo queues hold batch_size * 256 keys (All.pth 5, Denoise.pth 3, Derain and
    Dehaze.pth 1); the queue's length is read from the file (official or exda names)."""
    queues = [t for k, t in state.items() if k.endswith("queue") and t.ndim == 2]
    return {"queue_size": queues[0].shape[1]} if len(queues) == 1 else {}


@official_mapping("airnet")
def airnet_from_official(state: StateDict) -> StateDict:
    """XLearning-SCU/2022-CVPR-AirNet's ``AirNet.state_dict()`` keys -> ours (tensors unchanged).

    The official DGRN keeps its groups and the body's last conv in one Sequential (``R.body.<g>``, the
    last index being the conv), and likewise the blocks and the group's conv; the last index is found
    from the keys. Unknown keys are kept, so the loader's strict check names them.
    """
    groups = 1 + max((int(m.group(1)) for k in state if (m := _BODY_RE.match(k))), default=-1)
    blocks = 1 + max((int(m.group(2)) for k in state if (m := _BODY_RE.match(k)) and m.group(2)), default=-1)

    def body(m: re.Match) -> str:
        g, b = int(m.group(1)), m.group(2)
        if b is None:
            return "body_conv." if g == groups - 1 else f"groups.{g}."
        return f"groups.{g}.conv." if int(b) == blocks - 1 else f"groups.{g}.blocks.{b}."

    mapped = {}
    for key, tensor in state.items():
        new = _BODY_RE.sub(body, key, count=1)
        for old, ours in _ENCODER_PARTS:
            if new.startswith(old):
                new = ours + new[len(old):]
        if new.startswith("encoder."):
            new = _DOWN_RE.sub(lambda m: f"{m.group(1)}.down.{m.group(2)}.", new, count=1)
            for old, ours in _BRANCH_PARTS:
                new = new.replace(old, ours)
        for old, ours in _BLOCK_PARTS:
            new = new.replace(old, ours)
        mapped[new] = tensor
    return mapped
