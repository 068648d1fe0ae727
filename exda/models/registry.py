"""One explicit registry of model factories: ``@register_model`` adds, ``create_model`` builds."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from exda.errors import UserError

_MODELS: dict[str, Callable[..., nn.Module]] = {}

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


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a factory under its function name; a duplicate name is a programming error."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered")
    _MODELS[name] = fn
    return fn


def _ensure_families_loaded() -> None:
    # Model families register themselves on import; the list is explicit, not a folder scan.
    import exda.models.adair  # noqa: F401
    import exda.models.airnet  # noqa: F401
    import exda.models.amir  # noqa: F401
    import exda.models.histoformer  # noqa: F401
    import exda.models.moce_ir  # noqa: F401
    import exda.models.restormer  # noqa: F401


def list_models() -> list[str]:
    _ensure_families_loaded()
    return sorted(_MODELS)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model; unknown names raise :class:`UserError` listing the known ones."""
    _ensure_families_loaded()
    if name not in _MODELS:
        raise UserError(f"unknown model {name!r}; known: {', '.join(sorted(_MODELS))}")
    try:
        model = _MODELS[name](**kwargs)
    except (TypeError, ValueError) as err:  # a bad option from a config or the command line
        raise UserError(f"model {name}: {err}") from err
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    return model
