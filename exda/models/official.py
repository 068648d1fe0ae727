"""Names of the peers' published checkpoints mapped into our modules.

Each model family registers, next to its network, a function that turns the official code's
state dict (keys as the official ``model.state_dict()`` writes them, no wrapper prefix) into ours:

    @official_mapping("adair")
    def adair_from_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

``load_pretrained`` (the reader of ``.pth`` / Lightning ``.ckpt`` / plain state dicts) lives here too.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

StateDict = dict[str, torch.Tensor]
Mapping = Callable[[StateDict], StateDict]

# registered architecture name (as in `exda models`) -> official-keys-to-ours mapping
OFFICIAL_MAPPINGS: dict[str, Mapping] = {}


def official_mapping(*arch_names: str) -> Callable[[Mapping], Mapping]:
    """Register ``fn`` as the official-to-exda key mapping of each named architecture."""

    def decorate(fn: Mapping) -> Mapping:
        for name in arch_names:
            if name in OFFICIAL_MAPPINGS:
                raise ValueError(f"official mapping for {name!r} is already registered")
            OFFICIAL_MAPPINGS[name] = fn
        return fn

    return decorate
