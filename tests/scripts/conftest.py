"""Fixtures of the script tests: a script loaded as a module, a package fetcher faked offline, random photos."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture(scope="session")
def load_script() -> Iterator[Callable[[str], ModuleType]]:
    """``load_script("photo_pool")``: scripts/photo_pool.py as a module (registered in ``sys.modules``,
    where dataclasses look their module up), removed again at the end of the session."""
    loaded: list[str] = []

    def load(name: str) -> ModuleType:
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        loaded.append(name)
        return module

    yield load
    for name in loaded:
        del sys.modules[name]


@pytest.fixture
def fake_fetcher() -> Callable[[dict[str, bytes]], tuple[type, list[str]]]:
    """``Fetcher, fetched = fake_fetcher(files)``: a stand-in for package_files.Fetcher that serves
    ``files`` ({path: bytes}) and records each source it is asked for in ``fetched``."""

    def make(files: dict[str, bytes]) -> tuple[type, list[str]]:
        fetched: list[str] = []

        class FakeFetcher:
            def __init__(self, folder: Path) -> None:
                pass

            def fetch(self, source: str, paths: list[str]) -> dict[str, bytes]:
                fetched.append(source)
                return {path: files[path] for path in paths}

        return FakeFetcher, fetched

    return make


@pytest.fixture
def write_photos() -> Callable[..., Path]:
    """``write_photos(folder, names, height, width)``: seeded random RGB photos ``folder/<name>.png`` (the folder
    made if missing); returns the folder."""

    def write(folder: Path, names: Iterable[str], height: int, width: int) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        for name in names:
            Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(folder / f"{name}.png")
        return folder

    return write
