"""Checkpoints: weights in safetensors, the resolved config in JSON, resume state in a torch file.

A checkpoint ``<dir>/<tag>`` is three files, each written atomically:

- ``<tag>.safetensors``: weights under ``model.<name>`` (and ``ema.<name>`` when EMA is on), with string
  metadata ``format``, ``model_name``, ``model_kwargs`` (JSON) and ``step``; enough to rebuild the model.
- ``<tag>.state.pt``: optimizer, scheduler, grad scaler, RNG states and data position; only for resume.
- ``<tag>.json``: resolved config, step, metrics and the SHA-256 and size of the other two files. Written
  last, so a checkpoint whose JSON exists is complete, and one whose files no longer match it is corrupt.

``keep_previous=True`` (the trainer's ``last``) first turns the complete ``<tag>`` into ``previous`` (hard
links, so no copy), so a crash or a full disk while the new one is written leaves a complete checkpoint;
:func:`latest_valid_checkpoint` picks the newest one whose files match their checksums.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch import nn
from torch.optim.swa_utils import AveragedModel

from exda.atomic import atomic_write
from exda.engine.file_kind import require_checkpoint_file, sniff
from exda.errors import UserError
from exda.layers.global_token import token_kwargs
from exda.models import create_model

FORMAT = "exda-checkpoint-v1"
WEIGHTS_SUFFIX = ".safetensors"
STATE_SUFFIX = ".state.pt"
INFO_SUFFIX = ".json"
PREVIOUS_TAG = "previous"
_CHUNK = 1 << 20


def file_digest(path: Path) -> dict[str, Any]:
    """SHA-256 and size of a file, as recorded in a checkpoint's JSON."""
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha.update(chunk)
    return {"sha256": sha.hexdigest(), "bytes": path.stat().st_size}


def _files(directory: Path, tag: str) -> dict[str, Path]:
    return {suffix: directory / f"{tag}{suffix}" for suffix in (WEIGHTS_SUFFIX, STATE_SUFFIX, INFO_SUFFIX)}


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
    src, dst = _files(directory, tag), _files(directory, PREVIOUS_TAG)
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
    keep_previous: bool = False,
) -> Path:
    """Write checkpoint ``<directory>/<tag>`` and return its ``.safetensors`` path.

    ``model`` must come from :func:`exda.create_model` (it carries ``model_name``/``model_kwargs``);
    DDP and EMA wrappers are unwrapped. ``train_state=None`` saves an inference-only checkpoint.
    ``keep_previous`` keeps the checkpoint being replaced as ``previous`` until the new one is complete.
    Weights that are not finite are never written (a UserError).
    """
    directory = Path(directory)
    net = _unwrap(model)
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


def resolve_checkpoint(path: str | Path, tags: tuple[str, ...] = ("last",)) -> Path:
    """Accept a checkpoint file, or a run/checkpoints folder (the first of ``tags`` found there); a file
    that no loader can read (text, HTML, empty, truncated, ...) is refused with one line saying what it is.

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
        raise UserError(f"no checkpoint ({names}) found in {path} (a folder: expected a run folder or its "
                        f"checkpoints/){hint}")
    if not path.exists():
        raise UserError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise UserError(f"{path} is not a regular file, not a checkpoint")
    require_checkpoint_file(path)  # an HTML page, a text file, a truncated download: one line, no loader
    return path


def _read_weights(path: Path) -> tuple[dict[str, str], dict[str, dict[str, torch.Tensor]]]:
    """Metadata and tensors grouped by prefix (``model``, ``ema``); UserError if not an exda checkpoint."""
    found = sniff(path)
    if found.kind != "safetensors" or found.metadata.get("format") != FORMAT:
        plain = found.kind == "safetensors" and found.loadable
        what = f"a safetensors file without exda's metadata (format {found.metadata.get('format')!r})" if plain \
            else found.what
        raise UserError(f"{path} is {what}, not an exda checkpoint (a .safetensors file written by exda train "
                        "or exda convert)")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            groups: dict[str, dict[str, torch.Tensor]] = {"model": {}, "ema": {}}
            for key in f.keys():
                prefix, _, name = key.partition(".")
                groups.setdefault(prefix, {})[name] = f.get_tensor(key)
    except UserError:
        raise
    except Exception as err:  # safetensors raises several types for foreign or truncated files
        raise UserError(f"{path} is a damaged exda checkpoint ({type(err).__name__}: {err})") from err
    return metadata, groups


def checkpoint_problem(weights: str | Path) -> str | None:
    """Why the checkpoint with this ``.safetensors`` file cannot be trusted, or None when it is complete
    and its files match the sizes and SHA-256 recorded in its JSON (checkpoints from before checksums were
    recorded are only checked for completeness)."""
    weights = Path(weights)
    info = weights.with_name(weights.name.removesuffix(WEIGHTS_SUFFIX) + INFO_SUFFIX)
    if not info.is_file():
        return f"incomplete ({info.name} missing)"
    try:
        record = json.loads(info.read_text())
        files = record.get("files", {}) if isinstance(record, dict) else None
        if not isinstance(files, dict):
            raise ValueError("no mapping")
    except (ValueError, UnicodeDecodeError):
        return f"corrupt ({info.name} is not a checkpoint record)"
    stem = weights.name.removesuffix(WEIGHTS_SUFFIX)
    for suffix in (WEIGHTS_SUFFIX, *(s for s in files if s != WEIGHTS_SUFFIX)):
        path = weights.with_name(stem + suffix)
        if not path.is_file():
            return f"incomplete ({path.name} missing)"
        expected = files.get(suffix)
        if expected is None:
            continue
        if path.stat().st_size != expected.get("bytes") or file_digest(path) != expected:
            return f"corrupt ({path.name} does not match the SHA-256 recorded in {info.name})"
    return None


def latest_valid_checkpoint(directory: str | Path, tags: tuple[str, ...] = ("last", PREVIOUS_TAG)
                            ) -> tuple[Path | None, list[str]]:
    """The newest (highest step) checkpoint among ``tags`` in ``directory`` that passes
    :func:`checkpoint_problem`, and one line for each present one that does not."""
    directory = Path(directory)
    best: tuple[int, Path] | None = None
    problems = []
    for tag in tags:
        files = _files(directory, tag)
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


def _read_info(path: Path) -> dict[str, Any]:
    """The JSON record beside a weights file (config, metrics); empty if it is missing."""
    info = path.with_name(path.name.removesuffix(WEIGHTS_SUFFIX) + INFO_SUFFIX)
    return json.loads(info.read_text()) if info.is_file() else {}


def _refuse_corrupt(path: Path, complete: bool = False) -> None:
    """UserError when the checkpoint's files do not match its recorded checksums (or, with ``complete``,
    when its JSON is missing); a weights file without JSON loads as before, for inference."""
    problem = checkpoint_problem(path)
    if problem is not None and (complete or not problem.startswith("incomplete")):
        raise UserError(f"checkpoint {path} is {problem}")


def load_state_into(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load weights strictly; a mismatch is the user's checkpoint/config pairing, so a UserError."""
    net = _unwrap(model)
    expected = net.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    reshaped = sorted(k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape)
    if missing or unexpected or reshaped:
        def named(keys: list[str], what: str, shapes: bool = False) -> str:
            if not keys:
                return f"0 {what}"
            shown = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" if shapes else k for k in keys[:3]]
            return f"{len(keys)} {what} ({', '.join(shown)}{', ...' if len(keys) > 3 else ''})"

        raise UserError(
            f"weights in {source} do not fit model {net.model_name}: "
            f"{named(missing, 'missing')}, {named(unexpected, 'unexpected')}, "
            f"{named(reshaped, 'of another shape', shapes=True)}"
        )
    nonfinite = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if nonfinite:  # never written by save_checkpoint: a damaged file
        raise UserError(f"weights in {source} are not finite ({len(nonfinite)} tensors, e.g. {nonfinite[0]!r}): "
                        "the file is damaged")
    net.load_state_dict(state, strict=True)


def load_for_inference(
    path: str | Path, device: str | torch.device = "cpu", use_ema: bool = True
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model named in the checkpoint, load its (EMA) weights, and return it in eval mode.
    A published checkpoint (``.pth``, ``.ckpt``, a foreign safetensors) goes through
    :func:`exda.load_pretrained`, its architecture inferred from its keys (``use_ema`` does not apply: it
    gives ``params_ema`` where the file has them).

    The returned dict holds ``path``, ``model_name``, ``model_kwargs``, ``step``, ``ema`` (whether EMA
    weights were loaded), ``config`` and ``metrics`` (the last two empty if the JSON is missing).
    """
    path = resolve_checkpoint(path)
    if not is_exda_checkpoint(path):
        return _load_published(path, device)
    _refuse_corrupt(path)
    metadata, groups = _read_weights(path)
    name, kwargs = _model_spec(metadata, path)
    model = _build_recorded(name, kwargs, path)
    if token_kwargs(model).keys() - kwargs.keys():  # built with today's defaults, not as it was trained
        raise UserError(f"{path} was saved before checkpoints recorded the global token's options; record the "
                        f"ones it was trained with: python scripts/record_token_options.py {path}")
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


def is_exda_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a run folder or a safetensors file written by :func:`save_checkpoint`."""
    path = Path(path)
    return path.is_dir() or sniff(path).metadata.get("format") == FORMAT


def load_checkpoint_or_pretrained(
    path: str | Path, device: str | torch.device = "cpu", arch: str | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """What ``--checkpoint`` accepts: an exda checkpoint (via :func:`load_for_inference`), or a published
    one (BasicSR ``.pth``, Lightning ``.ckpt``, plain state dict) via :func:`exda.load_pretrained`, with
    ``arch`` named or inferred from its keys. Returns the model in eval mode and the same info dict."""
    path = Path(path)
    if is_exda_checkpoint(path):
        model, info = load_for_inference(path, device=device)
        if arch is not None and arch != info["model_name"]:
            raise UserError(f"{path} is an exda checkpoint of {info['model_name']}, not --arch {arch}")
        return model, info
    return _load_published(path, device, arch)


def _load_published(path: Path, device: str | torch.device, arch: str | None = None
                    ) -> tuple[nn.Module, dict[str, Any]]:
    from exda.models.official import load_pretrained

    model = load_pretrained(path, arch=arch)
    info = {"path": path, "model_name": model.model_name, "model_kwargs": model.model_kwargs, "step": 0,
            "ema": model.pretrained_container in ("params_ema", "ema"), "config": {}, "metrics": {}}
    return model.to(device).eval(), info


def _model_spec(metadata: dict[str, str], path: Path) -> tuple[str, dict[str, Any]]:
    """The model name and keyword arguments an exda checkpoint records; one line when they are damaged."""
    try:
        kwargs = json.loads(metadata.get("model_kwargs", "{}"))
    except ValueError:
        kwargs = None
    if not isinstance(kwargs, dict):
        raise UserError(f"{path} is a damaged exda checkpoint (its model_kwargs are not a JSON object)")
    return metadata.get("model_name", ""), kwargs


def _build_recorded(name: str, kwargs: dict[str, Any], path: Path) -> nn.Module:
    try:
        return create_model(name, **kwargs)
    except UserError as err:  # an unknown name or option: a damaged file, or one from another exda version
        raise UserError(f"{path} records a model this exda cannot build: {err}") from err


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Everything needed to resume from a checkpoint.

    Keys: ``model_name``, ``model_kwargs``, ``step``, ``model`` and ``ema`` (state dicts; ``ema`` empty
    when EMA was off), ``config``, ``metrics`` and ``train_state`` (what the trainer passed on save).
    """
    path = resolve_checkpoint(path)
    state_path = path.with_name(path.name.removesuffix(WEIGHTS_SUFFIX) + STATE_SUFFIX)
    _refuse_corrupt(path, complete=True)
    metadata, groups = _read_weights(path)
    if not state_path.is_file():
        raise UserError(f"{path} has no training state ({state_path.name}); it is for inference only")
    record = _read_info(path)
    try:  # weights_only: tensors and plain containers, never code from the file
        train_state = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as err:  # an UnpicklingError for anything else; a RuntimeError for a damaged file
        raise UserError(f"{state_path} is not a readable exda training state ({type(err).__name__}); "
                        "it holds something other than tensors and plain values, or is damaged") from err
    name, kwargs = _model_spec(metadata, path)
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
