"""The exda checkpoint format: its files, how one is found, checked and read.

A checkpoint ``<dir>/<tag>`` is three files, written by :func:`exda.engine.checkpoint.save_checkpoint`:

- ``<tag>.safetensors``: weights under ``model.<name>`` (and ``ema.<name>`` when EMA is on), with string
  metadata ``format``, ``model_name``, ``model_kwargs`` (JSON) and ``step``; enough to rebuild the model.
- ``<tag>.state.pt``: optimizer, scheduler, grad scaler, RNG states and data position; only for resume.
- ``<tag>.json``: resolved config, step, metrics and the SHA-256 and size of the other two files. Written
  last, so a checkpoint whose JSON exists is complete, and one whose files no longer match it is corrupt.

Read here for inference (:mod:`exda.inference.loader`) and for training's resume alike.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn
from torch.optim.swa_utils import AveragedModel

from exda.errors import UserError
from exda.file_kind import require_checkpoint_file, sniff
from exda.models import create_model

FORMAT = "exda-checkpoint-v1"
WEIGHTS_SUFFIX = ".safetensors"
STATE_SUFFIX = ".state.pt"
INFO_SUFFIX = ".json"
_CHUNK = 1 << 20


def file_digest(path: Path) -> dict[str, Any]:
    """SHA-256 and size of a file, as recorded in a checkpoint's JSON."""
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha.update(chunk)
    return {"sha256": sha.hexdigest(), "bytes": path.stat().st_size}


def checkpoint_files(directory: Path, tag: str) -> dict[str, Path]:
    """The three files of checkpoint ``<directory>/<tag>``, by suffix."""
    return {suffix: directory / f"{tag}{suffix}" for suffix in (WEIGHTS_SUFFIX, STATE_SUFFIX, INFO_SUFFIX)}


def unwrap(model: nn.Module) -> nn.Module:
    """The bare network inside an EMA (AveragedModel) or DDP wrapper."""
    while isinstance(model, (AveragedModel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return model


def is_exda_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a run folder or a safetensors file written by exda."""
    path = Path(path)
    return path.is_dir() or sniff(path).metadata.get("format") == FORMAT


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


def read_weights(path: Path) -> tuple[dict[str, str], dict[str, dict[str, torch.Tensor]]]:
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


def refuse_corrupt(path: Path, complete: bool = False) -> None:
    """UserError when the checkpoint's files do not match its recorded checksums (or, with ``complete``,
    when its JSON is missing); a weights file without JSON loads as before, for inference."""
    problem = checkpoint_problem(path)
    if problem is not None and (complete or not problem.startswith("incomplete")):
        raise UserError(f"checkpoint {path} is {problem}")


def read_record(path: Path) -> dict[str, Any]:
    """The JSON record beside a weights file (config, metrics); empty if it is missing."""
    info = path.with_name(path.name.removesuffix(WEIGHTS_SUFFIX) + INFO_SUFFIX)
    return json.loads(info.read_text()) if info.is_file() else {}


def model_spec(metadata: dict[str, str], path: Path) -> tuple[str, dict[str, Any]]:
    """The model name and keyword arguments an exda checkpoint records; one line when they are damaged."""
    try:
        kwargs = json.loads(metadata.get("model_kwargs", "{}"))
    except ValueError:
        kwargs = None
    if not isinstance(kwargs, dict):
        raise UserError(f"{path} is a damaged exda checkpoint (its model_kwargs are not a JSON object)")
    return metadata.get("model_name", ""), kwargs


def build_recorded(name: str, kwargs: dict[str, Any], path: Path) -> nn.Module:
    """``create_model(name, **kwargs)``, as a checkpoint records them."""
    try:
        return create_model(name, **kwargs)
    except UserError as err:  # an unknown name or option: a damaged file, or one from another exda version
        raise UserError(f"{path} records a model this exda cannot build: {err}") from err


def load_state_into(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load weights strictly; a mismatch is the user's checkpoint/config pairing, so a UserError."""
    net = unwrap(model)
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
