"""The one checkpoint loader: any checkpoint kind -> the network, built once, and a record of what was loaded.

Kinds, told apart by content (never by name): an exda checkpoint (a ``.safetensors`` written by ``exda train``
or ``exda convert``, or a run folder: its ``last``), a BasicSR ``.pth`` (``params_ema``, else ``params``; the
official Restormer format), a Lightning ``.ckpt`` (``state_dict``, ``net.`` prefix; PromptIR), or a plain
state dict (``.pth`` or ``.safetensors``, ``module.`` stripped). A published file's architecture is the
``arch`` given, else inferred from its keys and shapes (:func:`exda.models.official.infer_arch`). Every
command that takes ``--checkpoint`` and :func:`exda.restore` load through :func:`load_network`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from exda.errors import UserError
from exda.file_kind import sniff
from exda.inference.checkpoint_format import (
    FORMAT,
    build_recorded,
    is_exda_checkpoint,
    load_state_into,
    model_spec,
    read_record,
    read_weights,
    refuse_corrupt,
    resolve_checkpoint,
)
from exda.layers.global_token import token_kwargs
from exda.models import create_model, list_models, model_traits
from exda.models.official import infer_arch, official_kwargs, official_state, read_state_dict

CheckpointKind = Literal["exda", "basicsr", "lightning", "state_dict"]
_KIND_OF_CONTAINER: dict[str, CheckpointKind] = {"params_ema": "basicsr", "params": "basicsr",
                                                 "state_dict": "lightning"}


@dataclass(frozen=True)
class CheckpointInfo:
    """What :func:`load_network` loaded.

    ``arch`` and ``kwargs``: ``create_model``'s name and keyword arguments (as trained); ``path``: the weights
    file (a run folder resolved); ``kind``: the file's format; ``container``: where in the file the weights
    were (``model`` / ``ema`` in an exda checkpoint; ``params_ema``, ``params``, ``state_dict``, ``top level``
    in a published one); ``step``: the training step (0 for a published file); ``ema``: whether EMA weights
    were loaded; ``config`` and ``metrics``: an exda checkpoint's JSON record (empty otherwise).
    """

    arch: str
    kwargs: dict[str, Any]
    path: Path
    kind: CheckpointKind
    container: str
    step: int
    ema: bool
    in_channels: int
    parameters: int
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """``exda_restormer_small, 2.61M parameters, step 3000``: for the one line a command says."""
        return f"{self.arch}, {self.parameters / 1e6:.2f}M parameters, step {self.step}"


def load_network(checkpoint: str | Path, *, arch: str | None = None, use_ema: bool = True,
                 device: str | torch.device = "cpu") -> tuple[nn.Module, CheckpointInfo]:
    """Build the network a checkpoint of any kind belongs to, load its weights (EMA ones where the file
    has them, unless ``use_ema`` is False) and return it in eval mode on ``device``, with its record.

    ``arch``: a registered model name; for a published file it picks the architecture (inferred when None),
    for an exda checkpoint it must be the one recorded. Anything wrong with the file is one UserError line.
    """
    path = resolve_checkpoint(checkpoint)  # missing, a folder without one, text, HTML, truncated: one line
    if arch is not None and arch not in list_models():
        raise UserError(f"unknown model {arch!r}; known: {', '.join(list_models())}")
    loader = _load_exda if is_exda_checkpoint(path) else _load_published
    model, info = loader(path, arch, use_ema)
    return model.to(device).eval(), info


def load_pretrained(path: str | Path, arch: str | None = None) -> nn.Module:
    """The network of a checkpoint of any kind (a published ``.pth`` / ``.ckpt`` or an exda one), in eval
    mode on the CPU: :func:`load_network` without the record. ``arch``: as there."""
    return load_network(path, arch=arch)[0]


def _load_exda(path: Path, arch: str | None, use_ema: bool) -> tuple[nn.Module, CheckpointInfo]:
    refuse_corrupt(path)
    metadata, groups = read_weights(path)
    name, kwargs = model_spec(metadata, path)
    if arch is not None and arch != name:
        raise UserError(f"{path} is an exda checkpoint of {name}, not --arch {arch}")
    model = build_recorded(name, kwargs, path)
    if token_kwargs(model).keys() - kwargs.keys():  # built with today's defaults, not as it was trained
        raise UserError(f"{path} was saved before checkpoints recorded the global token's options; record the "
                        f"ones it was trained with: python scripts/record_token_options.py {path}")
    ema = use_ema and bool(groups["ema"])
    load_state_into(model, groups["ema"] if ema else groups["model"], path)
    record = read_record(path)
    return model, _info(model, name, kwargs, path, "exda", "ema" if ema else "model",
                        step=int(metadata.get("step", 0)), ema=ema, config=record.get("config", {}),
                        metrics=record.get("metrics", {}))


def _load_published(path: Path, arch: str | None, use_ema: bool) -> tuple[nn.Module, CheckpointInfo]:
    found = sniff(path)
    if "model_name" in found.metadata and found.metadata.get("format") != FORMAT:
        raise UserError(f"{path} is an exda checkpoint of unknown format {found.metadata.get('format')!r} "
                        f"(damaged, or written by another exda version); expected {FORMAT!r}")
    state, container = read_state_dict(path, ema=use_ema)
    if arch is None:
        arch = infer_arch(state, path)
    kwargs = official_kwargs(arch, state)
    model = create_model(arch, **kwargs)
    load_state_into(model, official_state(arch, state, model), path)
    kind = _KIND_OF_CONTAINER.get(container, "state_dict")
    return model, _info(model, arch, kwargs, path, kind, container, step=0, ema=container == "params_ema")


def _info(model: nn.Module, arch: str, kwargs: dict[str, Any], path: Path, kind: CheckpointKind, container: str,
          **fields: Any) -> CheckpointInfo:
    return CheckpointInfo(arch=arch, kwargs=kwargs, path=path, kind=kind, container=container,
                          in_channels=model_traits(model).in_channels,
                          parameters=sum(p.numel() for p in model.parameters()), **fields)
