"""Suite-wide settings and the fixtures many test folders share.

One intra-op thread: the tests use tiny tensors, where thread synchronisation costs more than it saves,
and CI runs on 2 cores. Tests are grouped by what they test (tests/<package>/ for exda/<package>/,
tests/test_<module>.py for a top-level module, plus commands/, reliability/, docs/, scripts/); their
data files lie in tests/assets/. ``-m "not slow"`` skips the slowest tests.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import exda
from exda.engine.checkpoint import save_checkpoint

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _grad_mode_is_left_on():
    """A test (or the code it calls) that switches autograd off for the whole process fails here, not in
    whichever test happens to train next."""
    yield
    if not torch.is_grad_enabled():
        torch.set_grad_enabled(True)
        pytest.fail("autograd was left disabled for the whole process (torch.set_grad_enabled(False)?)")

TINY_MODEL = "restormer_test"
# The smallest training run: the tiny ExDA model, one degradation, 16 px patches, no validation.
TINY_CONFIG: dict[str, Any] = {
    "model": {"name": "exda_restormer_test"},
    "data": {"degradations": ["noise25"], "patch_size": 16, "batch_size": 2, "num_workers": 0, "length": 4,
             "val_max_items": 0},
    "train": {"iters": 2, "val_every": 0, "ckpt_every": 1, "device": "cpu"},
}


@pytest.fixture
def device() -> torch.device:
    """CUDA when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture
def generator() -> torch.Generator:
    """A CPU generator seeded with 0, for reproducible inputs."""
    return torch.Generator().manual_seed(0)


def _save_tiny_checkpoint(folder: Path, name: str = TINY_MODEL, *, seed: int = 0, step: int = 1,
                          **model_kwargs: Any) -> Path:
    torch.manual_seed(seed)
    model = exda.create_model(name, **model_kwargs)
    return save_checkpoint(folder, "last", model=model, config={}, step=step, metrics={}, train_state=None)


@pytest.fixture(scope="session")
def make_checkpoint() -> Callable[..., Path]:
    """``make_checkpoint(folder, name="restormer_test", seed=0, step=1, **model_kwargs)``: an inference-only
    exda checkpoint ``folder/last.safetensors`` of a freshly initialised model (weights from ``seed``)."""
    return _save_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``restormer_test`` checkpoint (seed 0, step 1) for the whole session, ``.../run/last.safetensors``;
    read it, never change it."""
    return _save_tiny_checkpoint(tmp_path_factory.mktemp("tiny_checkpoint") / "run")


@pytest.fixture
def tiny_config() -> dict[str, Any]:
    """The raw config (``config_from_dict`` / YAML form) of the smallest training run; a fresh copy per test."""
    return copy.deepcopy(TINY_CONFIG)
