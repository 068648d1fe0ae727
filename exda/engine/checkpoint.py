"""Checkpoints written by training, and read back to resume: weights in safetensors, the resolved config
in JSON, resume state in a torch file (the format: :mod:`exda.inference.checkpoint_format`), each file
written atomically.

``keep_previous=True`` (the trainer's ``last``) first turns the complete ``<tag>`` into ``previous`` (hard
links, so no copy), so a crash or a full disk while the new one is written leaves a complete checkpoint;
:func:`latest_valid_checkpoint` picks the newest one whose files match their checksums.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn

from exda.atomic import atomic_write
from exda.errors import UserError
from exda.inference.checkpoint_format import (
    FORMAT,
    INFO_SUFFIX,
    STATE_SUFFIX,
    WEIGHTS_SUFFIX,
    checkpoint_files,
    checkpoint_problem,
    file_digest,
    model_spec,
    read_record,
    read_weights,
    refuse_corrupt,
    resolve_checkpoint,
    unwrap,
)
from exda.layers.global_token import token_kwargs

PREVIOUS_TAG = "previous"


def _link_or_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` hold ``src``'s bytes, atomically: a hard link where the file system allows it."""
    tmp = dst.with_name(f".{dst.name}.link.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _keep_as_previous(directory: Path, tag: str) -> None:
    """Turn the complete checkpoint ``tag`` into ``previous`` (JSON last, as in a save)."""
    src, dst = checkpoint_files(directory, tag), checkpoint_files(directory, PREVIOUS_TAG)
    if not src[INFO_SUFFIX].is_file():
        return  # no complete checkpoint to keep
    dst[INFO_SUFFIX].unlink(missing_ok=True)
    for suffix in (WEIGHTS_SUFFIX, STATE_SUFFIX):
        if src[suffix].is_file():
            _link_or_copy(src[suffix], dst[suffix])
        else:
            dst[suffix].unlink(missing_ok=True)
    _link_or_copy(src[INFO_SUFFIX], dst[INFO_SUFFIX])


class _WriteErrorKeeper:
    """A binary file whose first OSError is kept: torch.save reports a failed write (full disk) only as a
    RuntimeError from its zip writer, so :func:`_torch_save` raises the OSError behind it instead."""

    def __init__(self, fh) -> None:
        self.fh, self.error = fh, None

    def write(self, data) -> int:
        try:
            return self.fh.write(data)
        except OSError as err:
            self.error = self.error or err
            raise

    def flush(self) -> None:
        self.fh.flush()


def _torch_save(obj: Any, path: Path) -> None:
    with open(path, "wb") as fh:
        keeper = _WriteErrorKeeper(fh)
        try:
            torch.save(obj, keeper)
        except RuntimeError:
            if keeper.error is not None:
                raise keeper.error from None
            raise


def remove_stale_temp_files(directory: str | Path) -> list[Path]:
    """Delete the temp files that a killed save left in a checkpoint folder; returns them."""
    directory = Path(directory)
    stale = [p for p in directory.glob(".*.tmp") if p.is_file()] if directory.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _tensors(prefix: str, model: nn.Module) -> dict[str, torch.Tensor]:
    # clone() breaks storage sharing (tied weights), which safetensors refuses to save.
    return {f"{prefix}.{k}": v.detach().cpu().contiguous().clone() for k, v in unwrap(model).state_dict().items()}


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
    keep_previous: bool = False,
) -> Path:
    """Write checkpoint ``<directory>/<tag>`` and return its ``.safetensors`` path.

    ``model`` must come from :func:`exda.create_model` (it carries ``model_name``/``model_kwargs``);
    DDP and EMA wrappers are unwrapped. ``train_state=None`` saves an inference-only checkpoint.
    ``keep_previous`` keeps the checkpoint being replaced as ``previous`` until the new one is complete.
    Weights that are not finite are never written (a UserError).
    """
    directory = Path(directory)
    net = unwrap(model)
    if not hasattr(net, "model_name"):
        raise ValueError("save_checkpoint needs a model built by exda.create_model (no model_name)")
    tensors = _tensors("model", net)
    if ema_model is not None:
        tensors.update(_tensors("ema", ema_model))
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise UserError(f"weights are not finite at step {step} ({len(bad)} tensors, e.g. {bad[0]!r}); "
                        f"checkpoint {tag} not written")
    metadata = {
        "format": FORMAT,
        "model_name": net.model_name,
        "model_kwargs": json.dumps({**token_kwargs(net), **net.model_kwargs}),
        "step": str(step),
    }
    weights = directory / f"{tag}{WEIGHTS_SUFFIX}"
    state = directory / f"{tag}{STATE_SUFFIX}"
    info = directory / f"{tag}{INFO_SUFFIX}"
    directory.mkdir(parents=True, exist_ok=True)
    if keep_previous:
        _keep_as_previous(directory, tag)
    # The JSON marks a complete checkpoint: drop it first so a crash mid-save never leaves a stale one.
    info.unlink(missing_ok=True)
    if train_state is not None:
        atomic_write(state, lambda tmp: _torch_save(train_state, tmp))
    else:
        state.unlink(missing_ok=True)
    # Serialised in memory, then written by Python, so a full disk is an OSError (not a SafetensorError).
    payload = safetensors_bytes(tensors, metadata=metadata)
    atomic_write(weights, lambda tmp: tmp.write_bytes(payload))
    from exda.engine.evaluate import finite_or_none  # strict JSON: an identity task scores inf dB

    files = {WEIGHTS_SUFFIX: file_digest(weights)}
    if train_state is not None:
        files[STATE_SUFFIX] = file_digest(state)
    record = {"format": FORMAT, "step": step, "files": files, "metrics": finite_or_none(metrics),
              "config": config}
    atomic_write(info, lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n"))
    return weights


def latest_valid_checkpoint(directory: str | Path, tags: tuple[str, ...] = ("last", PREVIOUS_TAG)
                            ) -> tuple[Path | None, list[str]]:
    """The newest (highest step) checkpoint among ``tags`` in ``directory`` that passes
    :func:`checkpoint_problem`, and one line for each present one that does not."""
    directory = Path(directory)
    best: tuple[int, Path] | None = None
    problems = []
    for tag in tags:
        files = checkpoint_files(directory, tag)
        if not any(path.exists() for path in files.values()):
            continue
        problem = checkpoint_problem(files[WEIGHTS_SUFFIX])
        if problem is not None:
            problems.append(f"checkpoint {tag} is {problem}")
            continue
        step = int(json.loads(files[INFO_SUFFIX].read_text()).get("step", 0))
        if best is None or step > best[0]:
            best = (step, files[WEIGHTS_SUFFIX])
    return (best[1] if best else None), problems


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Everything needed to resume from a checkpoint.

    Keys: ``model_name``, ``model_kwargs``, ``step``, ``model`` and ``ema`` (state dicts; ``ema`` empty
    when EMA was off), ``config``, ``metrics`` and ``train_state`` (what the trainer passed on save).
    """
    path = resolve_checkpoint(path)
    state_path = path.with_name(path.name.removesuffix(WEIGHTS_SUFFIX) + STATE_SUFFIX)
    refuse_corrupt(path, complete=True)
    metadata, groups = read_weights(path)
    if not state_path.is_file():
        raise UserError(f"{path} has no training state ({state_path.name}); it is for inference only")
    record = read_record(path)
    try:  # weights_only: tensors and plain containers, never code from the file
        train_state = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as err:  # an UnpicklingError for anything else; a RuntimeError for a damaged file
        raise UserError(f"{state_path} is not a readable exda training state ({type(err).__name__}); "
                        "it holds something other than tensors and plain values, or is damaged") from err
    name, kwargs = model_spec(metadata, path)
    return {
        "model_name": name,
        "model_kwargs": kwargs,
        "step": int(metadata.get("step", 0)),
        "model": groups["model"],
        "ema": groups["ema"],
        "config": record.get("config", {}),
        "metrics": record.get("metrics", {}),
        "train_state": train_state,
    }
