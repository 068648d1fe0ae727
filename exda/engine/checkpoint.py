"""Checkpoints: weights in safetensors, the resolved config in JSON, resume state in a torch file.

A checkpoint ``<dir>/<tag>`` is three files, each written atomically:

- ``<tag>.safetensors``: weights under ``model.<name>`` (and ``ema.<name>`` when EMA is on), with string
  metadata ``format``, ``model_name``, ``model_kwargs`` (JSON) and ``step``; enough to rebuild the model.
- ``<tag>.state.pt``: optimizer, scheduler, grad scaler, RNG states and data position; only for resume.
- ``<tag>.json``: resolved config, step and metrics. Written last, so a checkpoint whose JSON exists is
  complete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from torch.optim.swa_utils import AveragedModel

from exda.atomic import atomic_write
from exda.errors import UserError
from exda.models import create_model

FORMAT = "exda-checkpoint-v1"
WEIGHTS_SUFFIX = ".safetensors"
STATE_SUFFIX = ".state.pt"
INFO_SUFFIX = ".json"


def _unwrap(model: nn.Module) -> nn.Module:
    """The bare network inside an EMA (AveragedModel) or DDP wrapper."""
    while isinstance(model, (AveragedModel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return model


def _tensors(prefix: str, model: nn.Module) -> dict[str, torch.Tensor]:
    # clone() breaks storage sharing (tied weights), which safetensors refuses to save.
    return {f"{prefix}.{k}": v.detach().cpu().contiguous().clone() for k, v in _unwrap(model).state_dict().items()}


def save_checkpoint(
    directory: str | Path,
    tag: str,
    *,
    model: nn.Module,
    ema_model: nn.Module | None = None,
    config: dict[str, Any],
    step: int,
    metrics: dict[str, Any],
    train_state: dict[str, Any] | None,
) -> Path:
    """Write checkpoint ``<directory>/<tag>`` and return its ``.safetensors`` path.

    ``model`` must come from :func:`exda.create_model` (it carries ``model_name``/``model_kwargs``);
    DDP and EMA wrappers are unwrapped. ``train_state=None`` saves an inference-only checkpoint.
    """
    directory = Path(directory)
    net = _unwrap(model)
    if not hasattr(net, "model_name"):
        raise ValueError("save_checkpoint needs a model built by exda.create_model (no model_name)")
    tensors = _tensors("model", net)
    if ema_model is not None:
        tensors.update(_tensors("ema", ema_model))
    metadata = {
        "format": FORMAT,
        "model_name": net.model_name,
        "model_kwargs": json.dumps(net.model_kwargs),
        "step": str(step),
    }
    weights = directory / f"{tag}{WEIGHTS_SUFFIX}"
    state = directory / f"{tag}{STATE_SUFFIX}"
    info = directory / f"{tag}{INFO_SUFFIX}"
    # The JSON marks a complete checkpoint: drop it first so a crash mid-save never leaves a stale one.
    info.unlink(missing_ok=True)
    if train_state is not None:
        atomic_write(state, lambda tmp: torch.save(train_state, tmp))
    else:
        state.unlink(missing_ok=True)
    atomic_write(weights, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    from exda.engine.evaluate import finite_or_none  # strict JSON: an identity task scores inf dB

    record = {"format": FORMAT, "step": step, "metrics": finite_or_none(metrics), "config": config}
    atomic_write(info, lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n"))
    return weights


def resolve_checkpoint(path: str | Path, tags: tuple[str, ...] = ("last",)) -> Path:
    """Accept a ``.safetensors`` file, or a run/checkpoints folder (the first of ``tags`` found there).

    A folder means ``last``: ``best`` is selected on the validation set, which for the benchmark
    layouts is their test split, so it is only used when named explicitly.
    """
    path = Path(path)
    if path.is_dir():
        for folder in (path / "checkpoints", path):
            for tag in tags:
                candidate = folder / f"{tag}{WEIGHTS_SUFFIX}"
                if candidate.is_file():
                    return candidate
        names = ", ".join(f"{tag}{WEIGHTS_SUFFIX}" for tag in tags)
        others = sorted(str(p) for folder in (path / "checkpoints", path) if folder.is_dir()
                        for p in folder.glob(f"*{WEIGHTS_SUFFIX}"))
        hint = f"; name a file explicitly: {', '.join(others)}" if others else ""
        raise UserError(f"no checkpoint ({names}) found in {path}{hint}")
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    return path


def _read_weights(path: Path) -> tuple[dict[str, str], dict[str, dict[str, torch.Tensor]]]:
    """Metadata and tensors grouped by prefix (``model``, ``ema``); UserError if not an exda checkpoint."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            if metadata.get("format") != FORMAT:
                raise UserError(f"{path} is not an exda checkpoint (format {metadata.get('format')!r})")
            groups: dict[str, dict[str, torch.Tensor]] = {"model": {}, "ema": {}}
            for key in f.keys():
                prefix, _, name = key.partition(".")
                groups.setdefault(prefix, {})[name] = f.get_tensor(key)
    except UserError:
        raise
    except Exception as err:  # safetensors raises several types for foreign or truncated files
        raise UserError(f"{path} is not a readable exda checkpoint ({type(err).__name__})") from err
    return metadata, groups


def _read_info(path: Path) -> dict[str, Any]:
    """The JSON record beside a weights file (config, metrics); empty if it is missing."""
    info = path.with_name(path.name.removesuffix(WEIGHTS_SUFFIX) + INFO_SUFFIX)
    return json.loads(info.read_text()) if info.is_file() else {}


def load_state_into(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load weights strictly; a mismatch is the user's checkpoint/config pairing, so a UserError."""
    net = _unwrap(model)
    expected = net.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    reshaped = sorted(k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape)
    if missing or unexpected or reshaped:
        example = (missing or unexpected or reshaped)[0]
        raise UserError(
            f"weights in {source} do not fit model {getattr(net, 'model_name', type(net).__name__)}: "
            f"{len(missing)} missing, {len(unexpected)} unexpected, {len(reshaped)} of another shape "
            f"(e.g. {example!r})"
        )
    net.load_state_dict(state, strict=True)


def load_for_inference(
    path: str | Path, device: str | torch.device = "cpu", use_ema: bool = True
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model named in the checkpoint, load its (EMA) weights, and return it in eval mode.

    The returned dict holds ``path``, ``model_name``, ``model_kwargs``, ``step``, ``ema`` (whether EMA
    weights were loaded), ``config`` and ``metrics`` (the last two empty if the JSON is missing).
    """
    path = resolve_checkpoint(path)
    metadata, groups = _read_weights(path)
    name = metadata.get("model_name", "")
    kwargs = json.loads(metadata.get("model_kwargs", "{}"))
    model = create_model(name, **kwargs)
    ema = use_ema and bool(groups["ema"])
    load_state_into(model, groups["ema"] if ema else groups["model"], path)
    record = _read_info(path)
    info = {
        "path": path,
        "model_name": name,
        "model_kwargs": kwargs,
        "step": int(metadata.get("step", 0)),
        "ema": ema,
        "config": record.get("config", {}),
        "metrics": record.get("metrics", {}),
    }
    return model.to(device).eval(), info


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Everything needed to resume from a checkpoint.

    Keys: ``model_name``, ``model_kwargs``, ``step``, ``model`` and ``ema`` (state dicts; ``ema`` empty
    when EMA was off), ``config``, ``metrics`` and ``train_state`` (what the trainer passed on save).
    """
    path = resolve_checkpoint(path)
    state_path = path.with_name(path.name.removesuffix(WEIGHTS_SUFFIX) + STATE_SUFFIX)
    if not state_path.is_file():
        raise UserError(f"{path} has no training state ({state_path.name}); it is for inference only")
    metadata, groups = _read_weights(path)
    record = _read_info(path)
    return {
        "model_name": metadata.get("model_name", ""),
        "model_kwargs": json.loads(metadata.get("model_kwargs", "{}")),
        "step": int(metadata.get("step", 0)),
        "model": groups["model"],
        "ema": groups["ema"],
        "config": record.get("config", {}),
        "metrics": record.get("metrics", {}),
        "train_state": torch.load(state_path, map_location="cpu", weights_only=True),
    }
