"""The README's architecture map lists every folder and module of the package, and names nothing that
does not exist: a newcomer finds where a concept lives from the map alone."""

from __future__ import annotations

import re
from pathlib import Path

import exda

PACKAGE = Path(exda.__file__).resolve().parent
ROOT = PACKAGE.parent
README = ROOT / "README.md"


def _map_entries() -> list[str]:
    """The path in the first cell of each row of the README's "Architecture map" table."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Architecture map\n", 1)[1].split("\n## ", 1)[0]
    return [match.group(1) for match in re.finditer(r"^\| (?:\*\*)?`([^`]+)`", section, flags=re.M)]


def _package_entries() -> set[str]:
    """Every folder (``exda/x/``) and module (``exda/x/y.py``) of the package; a folder's ``__init__.py``
    is described by the folder's own row."""
    folders = {f"{p.relative_to(ROOT).as_posix()}/" for p in [PACKAGE, *PACKAGE.rglob("*")]
               if p.is_dir() and p.name != "__pycache__"}
    modules = {p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    return folders | modules


def test_the_map_lists_every_folder_and_module_of_the_package() -> None:
    listed = {entry for entry in _map_entries() if entry.startswith("exda/")}
    assert sorted(_package_entries() - listed) == [], "missing from the README's architecture map"
    assert sorted(listed - _package_entries()) == [], "in the README's architecture map but not in the package"


def test_every_path_in_the_map_exists_once() -> None:
    entries = _map_entries()
    assert len(entries) > 50
    assert [entry for entry in entries if not (ROOT / entry).exists()] == []
    assert sorted({entry for entry in entries if entries.count(entry) > 1}) == []
