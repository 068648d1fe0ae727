"""scripts/package_files.py, offline: a source that cannot be had, and the pool folder's record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SPLITS = ("train", "heldout")


@pytest.fixture(scope="module")
def files(load_script):
    return load_script("package_files")


def _outputs(record: dict) -> set[str]:
    return {f"{split}/{name}.png" for name, split in record["items"].items()}


def test_a_source_that_cannot_be_had_is_one_line_and_skipped(files, capsys: pytest.CaptureFixture[str]) -> None:
    failures: list[str] = []
    assert list(files.fetch_sources({"nope:x==1": ["a.png", "b.png"]}, files.Fetcher, "pool", failures)) == []
    assert failures == ["nope:x==1: unknown source kind 'nope'"]
    assert capsys.readouterr().err == "pool: FAILED nope:x==1: unknown source kind 'nope' (2 files skipped)\n"


def test_the_record_removes_what_it_no_longer_holds_and_refuses_foreign_files(files, tmp_path: Path) -> None:
    empty = {"items": {}}
    assert files.read_pool_record(tmp_path, "pool", empty, _outputs, SPLITS) == empty  # a new folder
    for split, name in [("train", "a"), ("train", "b"), ("heldout", "c")]:
        (tmp_path / split).mkdir(exist_ok=True)
        (tmp_path / split / f"{name}.png").write_bytes(b"png")
    record = {"items": {"a": "train", "c": "heldout"}}
    files.write_pool_record(tmp_path, record, _outputs, SPLITS)  # b is not in the record (an earlier run's): it goes
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.png")) == ["heldout/c.png", "train/a.png"]
    assert json.loads((tmp_path / "pool.json").read_text()) == record
    assert files.read_pool_record(tmp_path, "pool", empty, _outputs, SPLITS) == record
    (tmp_path / "heldout" / "mine.jpg").write_bytes(b"jpg")  # someone else's file: refused, not deleted
    with pytest.raises(ValueError, match=r"heldout/mine.jpg \(and 0 more\) not written by pool.py"):
        files.read_pool_record(tmp_path, "pool", empty, _outputs, SPLITS)
