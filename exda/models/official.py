"""Names of the peers' published checkpoints mapped into our modules, and the reader of those files.

Each model family registers, next to its network, a function that turns the official code's
state dict (keys as the official ``model.state_dict()`` writes them, no wrapper prefix) into ours:

    @official_mapping("adair")
    def adair_from_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

A mapping passes keys it does not know through unchanged, so a mismatch names them. A family whose
official checkpoints come in several configurations (e.g. Restormer's bias-free norms, grayscale
inputs) may also register ``@official_config(name)``: official state dict -> our ``create_model``
keyword arguments.

:func:`read_state_dict` reads the state dict of a BasicSR ``.pth`` (``params`` / ``params_ema``), a
Lightning ``.ckpt`` (``state_dict`` with the ``net.`` prefix) or a plain state dict (``module.`` prefixes of
DDP stripped; ``.pth`` or ``.safetensors``), with ``torch.load(weights_only=True)`` only; :func:`infer_arch`
names the architecture such weights belong to and :func:`official_state` maps them onto it. This module
reads and maps only: the network is built and loaded by :mod:`exda.inference.loader`, which also reads
exda's own checkpoints.
"""

from __future__ import annotations

import functools
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from exda.errors import UserError
from exda.file_kind import EXPECTED, require_checkpoint_file
from exda.models.registry import create_model, list_models

StateDict = dict[str, torch.Tensor]
Mapping = Callable[[StateDict], StateDict]
ConfigReader = Callable[[StateDict], dict[str, Any]]

# registered architecture name (as in `exda models`) -> official-keys-to-ours mapping
OFFICIAL_MAPPINGS: dict[str, Mapping] = {}
# registered architecture name -> create_model kwargs read from an official state dict (optional)
OFFICIAL_CONFIGS: dict[str, ConfigReader] = {}

# Containers the training frameworks wrap a state dict in, most preferred first (BasicSR keeps the EMA
# weights under params_ema; Lightning under state_dict; others under model / model_state_dict).
_WRAPPERS = ("params_ema", "params", "state_dict", "model_state_dict", "model", "net")
_EMA_WRAPPERS = ("params_ema",)
_PREFIXES = ("module.", "net.", "model.")
# What torch's weights-only unpickler names when a pickle asks for code: a global, a class, a function.
_CODE_IN_PICKLE = re.compile(r"GLOBAL ([\w.]+)|Unsupported class ([\w.]+)|unrecognized function ([\w.]+)"
                             r"|but got <class '([\w.]+)'>")


def official_mapping(*arch_names: str) -> Callable[[Mapping], Mapping]:
    """Register ``fn`` as the official-to-exda key mapping of each named architecture."""

    def decorate(fn: Mapping) -> Mapping:
        for name in arch_names:
            if name in OFFICIAL_MAPPINGS:
                raise ValueError(f"official mapping for {name!r} is already registered")
            OFFICIAL_MAPPINGS[name] = fn
        return fn

    return decorate


def official_config(*arch_names: str) -> Callable[[ConfigReader], ConfigReader]:
    """Register ``fn`` (official state dict -> ``create_model`` kwargs) for each named architecture."""

    def decorate(fn: ConfigReader) -> ConfigReader:
        for name in arch_names:
            if name in OFFICIAL_CONFIGS:
                raise ValueError(f"official config reader for {name!r} is already registered")
            OFFICIAL_CONFIGS[name] = fn
        return fn

    return decorate


def rename_prefixes(state: StateDict, renames: dict[str, str]) -> StateDict:
    """Replace the longest matching key prefix from ``renames`` (official -> ours); others pass through."""
    ordered = sorted(renames, key=len, reverse=True)
    out = {}
    for key, value in state.items():
        new = next((renames[p] + key[len(p):] for p in ordered if key.startswith(p)), key)
        out[new] = value
    return out


def _unwrap(obj: Any, path: Path, ema: bool) -> tuple[StateDict, str]:
    """The state dict inside a loaded checkpoint object, and where it was found."""
    where = "top level"
    wrappers = _WRAPPERS if ema else tuple(k for k in _WRAPPERS if k not in _EMA_WRAPPERS)
    while isinstance(obj, dict) and not _is_state_dict(obj):
        key = next((k for k in wrappers if isinstance(obj.get(k), dict) and obj[k]), None)
        if key is None:
            keys = ", ".join(sorted(map(str, obj))[:6])
            raise UserError(f"{path} holds no state dict (top-level keys: {keys}); expected params_ema / params "
                            "(BasicSR), state_dict (Lightning) or a plain state dict")
        obj, where = obj[key], key
    if not isinstance(obj, dict) or not obj:
        raise UserError(f"{path} holds a {type(obj).__name__}, not a state dict")
    return _strip_prefixes(obj), where


def _is_state_dict(obj: dict) -> bool:
    return bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _strip_prefixes(state: StateDict) -> StateDict:
    """Drop wrapper prefixes: DDP's ``module.`` and a Lightning module's ``net.`` / ``model.`` attribute.
    Keys outside the network attribute (e.g. a loss network's weights) are training-only and dropped."""
    while True:
        for prefix in _PREFIXES:
            inside = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if inside and (prefix == "net." or len(inside) == len(state)):
                state = inside
                break
        else:
            return state


def read_state_dict(path: str | Path, ema: bool = True) -> tuple[StateDict, str]:
    """The network's state dict in a published file, and where in the file it was (``params_ema``,
    ``params``, ``state_dict``, ``top level``, ...); ``ema=False`` passes over ``params_ema``.

    The file's content, not its name, picks the reader: safetensors, else ``torch.load(weights_only=True)``,
    so a file that needs code to load is refused with one line; files neither can read (text, HTML,
    truncated) are named by :func:`exda.file_kind.sniff` before any reader runs.
    """
    path = Path(path)
    if require_checkpoint_file(path).kind == "safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as err:  # noqa: BLE001 - the header passed sniff(); anything else is damage
            raise UserError(f"{path} is a damaged safetensors file ({type(err).__name__}: {err})") from err
        if not state:
            raise UserError(f"{path} holds no tensors")
        return _strip_prefixes(state), "top level"
    try:  # a file object, so torch.load reads by content: given a name ending in .safetensors it would not
        with open(path, "rb") as fh:
            obj = torch.load(fh, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        code = _CODE_IN_PICKLE.search(str(err))
        if code is None:  # the weights-only unpickler met an opcode it does not know: damage, not code
            raise UserError(f"{path} is a damaged PyTorch checkpoint (its pickle does not parse); {EXPECTED}") from err
        raise UserError(f"{path} is a pickle that needs code to load ({next(filter(None, code.groups()))}), which "
                        "is never run: only tensors and plain containers are loaded (torch.load weights_only=True); "
                        "re-save the weights with torch.save(model.state_dict(), path)") from err
    except Exception as err:  # noqa: BLE001 - the unpickler meets damage as KeyError, IndexError, EOFError, ...
        detail = " ".join(str(err).split())[:80]
        raise UserError(f"{path} is a damaged or truncated PyTorch checkpoint ({type(err).__name__}: {detail}); "
                        f"{EXPECTED}") from err
    return _unwrap(obj, path, ema)


def official_kwargs(arch: str, state: StateDict) -> dict[str, Any]:
    """The ``create_model`` keyword arguments of the configuration ``state`` was trained in ({} for a
    family with one configuration)."""
    return OFFICIAL_CONFIGS[arch](state) if arch in OFFICIAL_CONFIGS else {}


@functools.cache
def _expected_shapes(arch: str, kwargs: tuple[tuple[str, Any], ...]) -> dict[str, tuple[int, ...]]:
    """The state dict shapes of ``create_model(arch, **dict(kwargs))``, from a model built on the meta device
    (nothing allocated); kept, as :func:`infer_arch` asks for every architecture each time. Read only."""
    try:
        with torch.device("meta"):
            model = create_model(arch, **dict(kwargs))
    except (UserError, RuntimeError, NotImplementedError):
        model = create_model(arch, **dict(kwargs))
    return _shapes(model)


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _fits(expected: dict[str, tuple[int, ...]], state: StateDict) -> bool:
    return expected.keys() == state.keys() and all(tuple(state[k].shape) == s for k, s in expected.items())


def _mapped(arch: str, state: StateDict) -> list[StateDict]:
    """The state dict as the official mapping of ``arch`` renames it, then as it is (exda's own names)."""
    out = []
    if arch in OFFICIAL_MAPPINGS:
        try:
            out.append(OFFICIAL_MAPPINGS[arch](dict(state)))
        except Exception:  # noqa: BLE001 - a mapping fed keys of another family may fail any way
            pass
    out.append(state)
    return out


def infer_arch(state: StateDict, source: str | Path | None = None) -> str:
    """The one registered architecture with an official mapping whose model takes ``state`` exactly
    (key set and every shape; models built on the meta device, so nothing is allocated)."""
    list_models()  # import every family, so its mappings are registered
    found = []
    for arch in sorted(OFFICIAL_MAPPINGS):
        expected = _expected_shapes(arch, tuple(sorted(official_kwargs(arch, state).items())))
        if any(_fits(expected, mapped) for mapped in _mapped(arch, state)):
            found.append(arch)
    if not found:
        known = ", ".join(sorted(OFFICIAL_MAPPINGS))
        where = f"{source} holds weights" if source is not None else "the weights"
        raise UserError(f"{where} ({len(state)} tensors, e.g. {next(iter(state))!r}) of none of the "
                        f"architectures with an official mapping ({known}); name one with --arch")
    if len(found) > 1:
        where = f"the weights in {source}" if source is not None else "the weights"
        raise UserError(f"{where} fit several architectures ({', '.join(found)}); choose one with --arch")
    return found[0]


def official_state(arch: str, state: StateDict, model: nn.Module) -> StateDict:
    """``state`` with the names ``model`` (an ``arch``) takes: the official mapping's when they fit it, else
    the names as they are (exda's own); the mapped ones when neither fits, so a mismatch names our keys."""
    expected = _shapes(model)
    candidates = _mapped(arch, state)
    return next((m for m in candidates if _fits(expected, m)), candidates[0])
