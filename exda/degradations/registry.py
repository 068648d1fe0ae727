"""One explicit table of named degradations; family modules add theirs with :func:`register`."""

from __future__ import annotations

from exda.degradations.base import Degradation
from exda.errors import UserError

_DEGRADATIONS: dict[str, Degradation] = {}
_ALIASES: dict[str, str] = {}


def register(degradation: Degradation) -> Degradation:
    """Add a degradation under its name; a duplicate name is a programming error."""
    if degradation.name in _DEGRADATIONS or degradation.name in _ALIASES:
        raise ValueError(f"degradation {degradation.name!r} is already registered")
    _DEGRADATIONS[degradation.name] = degradation
    return degradation


def register_alias(alias: str, name: str) -> None:
    """Make ``alias`` resolve to the already registered degradation ``name`` (the same object)."""
    if alias in _DEGRADATIONS or alias in _ALIASES or name not in _DEGRADATIONS:
        raise ValueError(f"cannot alias {alias!r} to {name!r}")
    _ALIASES[alias] = name


def get_degradation(name: str) -> Degradation:
    """The degradation registered as ``name``; an unknown name raises :class:`UserError` listing them all."""
    key = _ALIASES.get(name, name)
    if key not in _DEGRADATIONS:
        raise UserError(f"unknown degradation {name!r}; known: {', '.join(sorted(list_degradations()))}")
    return _DEGRADATIONS[key]


def list_degradations() -> dict[str, str]:
    """Every degradation, mixture and alias name -> its one-line description, sorted by name."""
    table = {name: deg.description for name, deg in _DEGRADATIONS.items()}
    table.update({alias: f"alias of {name}: {_DEGRADATIONS[name].description}" for alias, name in _ALIASES.items()})
    return dict(sorted(table.items()))
