"""The reliability tests share their bad files and limits with ``benchmarks/robustness.py``: one list of
what can go wrong, run fast here and counted there."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "robustness.py"


@pytest.fixture(scope="session")
def robustness() -> Iterator[ModuleType]:
    """benchmarks/robustness.py as a module (registered in ``sys.modules``, where its dataclasses look
    their module up), removed again at the end of the session."""
    spec = importlib.util.spec_from_file_location("robustness", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules["robustness"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["robustness"]
