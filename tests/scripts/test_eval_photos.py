"""The reserved evaluation photos (scripts/eval_photos.py), offline: packages are faked, never fetched."""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
RESERVED = re.compile(r"desktop-base|wallpaper|background|pyiqa")  # photo_pool.json's RESERVED entry


@pytest.fixture(scope="module")
def evaluation(load_script):
    return load_script("eval_photos")


def test_manifest_pins_reserved_sources_only_and_never_the_training_pool(evaluation) -> None:
    photos, max_side = evaluation.load_manifest(evaluation.MANIFEST)
    names = [entry["name"] for entry in photos]
    assert max_side == 1024 and 16 <= len(photos) <= 30 and len(set(names)) == len(names)
    for entry in photos:
        assert re.fullmatch(r"[a-z0-9_]+", entry["name"]) and entry["licence"]
        assert re.fullmatch(r"pypi:[\w.-]+==[\w.]+|debian:[\w.+-]+=[\w.:~+-]+", entry["source"]), entry["source"]
        assert RESERVED.search(entry["source"]) and re.fullmatch(r"[0-9a-f]{64}", entry["sha256"])
        width, height = entry["original_size"]
        left, top, right, bottom = entry.get("crop", (0, 0, width, height))
        assert 0 <= left < right <= width and 0 <= top < bottom <= height
    assert len({(entry["source"], entry["path"]) for entry in photos}) == len(photos)
    pool = json.loads((REPO / "scripts" / "photo_pool.json").read_text())
    pool_files = {(photo["source"], photo["path"]) for photo in pool["photos"]}
    pool_hashes = {photo["sha256"] for photo in pool["photos"]}
    assert not pool_files & {(entry["source"], entry["path"]) for entry in photos}
    assert not pool_hashes & {entry["sha256"] for entry in photos}


def _save(path: Path, seed: int, size: tuple[int, int] = (41, 29)) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_duplicate_check_finds_same_pixels_and_near_copies_across_the_sets_only(evaluation, tmp_path: Path) -> None:
    pool_dir, eval_dir = tmp_path / "pool", tmp_path / "eval"
    pool_dir.mkdir(), eval_dir.mkdir()
    pool = [_save(pool_dir / "a.png", 0), _save(pool_dir / "b.png", 1), _save(pool_dir / "b2.png", 1)]
    same = eval_dir / "same.png"
    Image.open(pool[0]).save(same, format="PNG", compress_level=1)  # other bytes, same pixels
    near = eval_dir / "near.png"
    pixels = np.asarray(Image.open(pool[1]), np.int16) + np.random.default_rng(9).integers(-3, 4, (29, 41, 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(near)
    other = _save(eval_dir / "other.png", 7)
    found = evaluation.find_duplicates([near, other, same], pool)
    assert sorted((a.stem, b.stem, how.split()[0]) for a, b, how in found) == [
        ("near", "b", "near-duplicate"), ("near", "b2", "near-duplicate"), ("same", "a", "same")]
    assert evaluation.pixel_digest(same) == evaluation.pixel_digest(pool[0])  # b and b2 (a pool pair): not reported


def test_build_writes_the_photos_and_fails_loudly_on_a_pool_photo(
    evaluation, tmp_path: Path, monkeypatch, fake_fetcher
) -> None:
    files = {}
    for name, seed in [("x.png", 0), ("y.png", 1)]:
        buffer = io.BytesIO()
        Image.open(_save(tmp_path / name, seed, (1500, 900))).save(buffer, format="PNG")
        files[name] = buffer.getvalue()
    entries = [{"name": name[0], "source": "debian:fake-wallpapers=1", "path": name, "licence": "CC0",
                "sha256": hashlib.sha256(data).hexdigest(), "original_size": [1500, 900]}
               for name, data in files.items()]
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"max_side": 1024, "photos": entries}))
    FakeFetcher, fetched = fake_fetcher(files)

    monkeypatch.setattr(evaluation, "MANIFEST", manifest)
    monkeypatch.setattr(evaluation, "_Fetcher", FakeFetcher)
    pool, dest = tmp_path / "pool", tmp_path / "eval"
    assert evaluation.main([str(dest), "--pool", str(pool)]) == 2  # no pool: one line, nothing fetched
    (pool / "train").mkdir(parents=True)
    (pool / "heldout").mkdir()
    _save(pool / "train" / "unrelated.png", 5)
    assert evaluation.main([str(dest), "--pool", str(pool)]) == 0
    assert sorted(p.name for p in dest.glob("*.png")) == ["x.png", "y.png"] and fetched == ["debian:fake-wallpapers=1"]
    record = json.loads((dest / "eval.json").read_text())
    assert record["x"]["size"] == [1024, 614] and record["x"]["original_size"] == [1500, 900]
    (dest / "y.png").rename(pool / "heldout" / "y.png")  # the eval photo is now in the training pool
    assert evaluation.main([str(dest), "--pool", str(pool)]) == 3
    assert fetched == ["debian:fake-wallpapers=1"] * 2  # y was fetched again, x was not
