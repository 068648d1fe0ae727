"""The README's examples run as written.

Every ```python block is executed, in order of appearance, each in a fresh namespace, from a temporary
folder holding the files the examples name (``photo.jpg``). Every ``exda`` command line in the ```bash
blocks (``torchrun ... -m exda ...`` included) must parse with the real argument parser, and its preset
must exist; the quick ones (``--version``, ``restore`` of a small photo / DICOM) also run to the end.
Only parsed: ``exda models`` (about 30 s of FLOP counting), ``train`` / ``eval`` / ``bench`` (minutes)
and ``serve`` (a server that does not return). Not checked: ``make`` targets.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydicom.data import get_testdata_file

import exda
from exda.cli import build_parser, main
from exda.commands.train import resolve_config_path

README = Path(exda.__file__).resolve().parents[1] / "README.md"
RUN_FULLY = {("--version",), ("restore", "photo.jpg"), ("restore", "scan.dcm"),
             ("restore", "big.jpg", "--max-memory", "1G")}


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), flags=re.M | re.S)


def _commands() -> list[list[str]]:
    """Every exda command line in the bash blocks, as argv after ``exda``."""
    found = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["exda"]:
                found.append(words[1:])
            elif "-m" in words and words[words.index("-m") + 1:][:1] == ["exda"]:
                found.append(words[words.index("-m") + 2:])
    return found


@pytest.fixture
def example_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The files the examples name: small, so the shipped model restores them in moments."""
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((36, 52, 3)) * 255).astype(np.uint8)).save(tmp_path / "photo.jpg", quality=90)
    Image.fromarray((rng.random((40, 30, 3)) * 255).astype(np.uint8)).save(tmp_path / "big.jpg", quality=90)
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "scan.dcm")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_has_examples() -> None:
    assert len(_blocks("python")) >= 3 and len(_commands()) >= 10


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_python_example_runs_as_written(index: int, example_folder: Path) -> None:
    torch.manual_seed(0)
    exec(compile(_blocks("python")[index], f"README.md python block {index + 1}", "exec"), {})


@pytest.mark.parametrize("argv", _commands(), ids=" ".join)
def test_shell_example_parses(argv: list[str], example_folder: Path, capsys) -> None:
    if tuple(argv) in RUN_FULLY:
        try:
            assert main(argv) == 0
        except SystemExit as done:  # --version
            assert done.code == 0
        return
    args = build_parser().parse_args(argv)
    if args.command == "train":
        resolve_config_path(args.config)


def test_quick_examples_ran() -> None:
    assert RUN_FULLY <= {tuple(argv) for argv in _commands()}, "RUN_FULLY names a command the README lost"
