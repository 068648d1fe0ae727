"""One explicit registry of model factories: ``@register_model`` adds, ``create_model`` builds.

Each factory is registered with the :class:`ModelTraits` of the models it builds (as timm's pretrained
config): what the rest of exda needs to know about a model without running it. :func:`model_traits`
gives them for a registered name, or for a model built by :func:`create_model`, which stamps them on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from torch import nn

from exda.errors import UserError

Factory = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelTraits:
    """What a registered model is and supports.

    - ``in_channels``: image channels it takes and returns (a factory's default; ``create_model``
      records the built model's own, e.g. 1 with ``in_channels=1``).
    - ``bf16_safe``: bf16 rounding changes its output only by rounding; False for a network whose output
      jumps on tiny input changes (Histoformer sorts pixels by value), which inference keeps in fp32.
    - ``onnx_unsupported``: why ``exda export`` refuses it (one line), or None when it exports to ONNX and
      onnxruntime reproduces PyTorch's fp32 output (tests/inference/test_backends.py checks every such model).
    - ``auxiliary_loss``: it has a training loss of its own, which ``exda train`` adds to the pixel loss:
      ``restore_with_auxiliary_loss(x)`` returns the restored image and that weighted term.
    """

    in_channels: int = 3
    bf16_safe: bool = True
    onnx_unsupported: str | None = None
    auxiliary_loss: bool = False

    @property
    def onnx_exportable(self) -> bool:
        return self.onnx_unsupported is None


DEFAULT_TRAITS = ModelTraits()
_MODELS: dict[str, Factory] = {}
_TRAITS: dict[str, ModelTraits] = {}

# The two primitives' settings an ``exda_*`` variant turns on, in every family.
EXDA_DEFAULTS: dict[str, str] = dict(value_transform="dwconv_gelu", global_token="row")


def model_options(size: dict, exda: bool, overrides: dict) -> dict:
    """A family's keyword arguments: its named size, ExDA's primitives when ``exda``, then the caller's
    overrides (a YAML 1.1 unquoted ``off``, read as False, means "off")."""
    config = {**size, **(EXDA_DEFAULTS if exda else {}), **overrides}
    for option in EXDA_DEFAULTS:
        if config.get(option) is False:
            config[option] = "off"
    return config


def image_channels(in_channels: int) -> int:
    """``in_channels``, checked: every model takes 1 (grayscale) or 3 (RGB) image channels."""
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
    return in_channels


def register_model(fn: Factory | None = None, *, traits: ModelTraits = DEFAULT_TRAITS):
    """Register a factory under its function name, with the traits of what it builds (the defaults
    without ``traits``): ``@register_model`` or ``@register_model(traits=...)``. A duplicate name is a
    programming error."""

    def register(fn: Factory) -> Factory:
        name = fn.__name__
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name], _TRAITS[name] = fn, traits
        return fn

    return register if fn is None else register(fn)


def list_models() -> list[str]:
    return sorted(_MODELS)


def _known(name: str) -> str:
    if name not in _MODELS:
        raise UserError(f"unknown model {name!r}; known: {', '.join(sorted(_MODELS))}")
    return name


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model; unknown names raise :class:`UserError` listing the known ones.

    The model carries ``model_name``, ``model_kwargs`` (what a checkpoint records to rebuild it) and
    ``traits`` (:func:`model_traits`)."""
    try:
        model = _MODELS[_known(name)](**kwargs)
    except (TypeError, ValueError) as err:  # a bad option from a config or the command line
        raise UserError(f"model {name}: {err}") from err
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    model.traits = replace(_TRAITS[name], in_channels=model.in_channels)
    return model


def model_traits(model: nn.Module | str) -> ModelTraits:
    """The traits of a registered model name, or of a model built by :func:`create_model` (also one
    loaded from a checkpoint, which is built that way)."""
    if isinstance(model, str):
        return _TRAITS[_known(model)]
    try:
        return model.traits
    except AttributeError:
        raise TypeError(f"{type(model).__name__} was not built by exda.create_model, so it has no traits") from None
