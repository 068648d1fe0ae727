"""The photo-pool manifest and builder (scripts/photo_pool.py), offline: packages are faked, never fetched."""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
RESERVED = re.compile(r"desktop-base|wallpaper|background|pyiqa|pydicom-data")


@pytest.fixture(scope="module")
def pool(load_script):
    return load_script("photo_pool")


def test_manifest_is_complete_and_keeps_the_validation_photos_apart(pool) -> None:
    photos, max_side = pool.load_manifest(pool.MANIFEST)
    names = [photo.name for photo in photos]
    heldout = {photo.name for photo in photos if photo.split == "heldout"}
    assert max_side == 1024 and len(photos) >= 100 and len(set(names)) == len(names)
    assert {"coffee", "flower", "grace_hopper"} <= heldout and len(heldout) >= 8
    for photo in photos:
        assert re.fullmatch(r"[a-z0-9_]+", photo.name) and photo.split in pool.SPLITS and photo.licence
        assert re.fullmatch(r"pypi:[\w.-]+==[\w.]+|debian:[\w.+-]+=[\w.:~+-]+", photo.source), photo.source
        assert re.fullmatch(r"[0-9a-f]{64}", photo.sha256) and not RESERVED.search(photo.source)
    assert len({(photo.source, photo.path) for photo in photos}) == len(photos)


def test_prepare_turns_crops_and_downscales_to_an_rgb_image(pool) -> None:
    buffer = io.BytesIO()
    Image.new("L", (1500, 900), 128).save(buffer, format="JPEG")
    photo = pool.Photo("x", "train", "pypi:x==1", "x.jpg", "0" * 64, "CC0", rotate=90, crop=(0, 100, 1400, 900))
    image = pool.prepare(buffer.getvalue(), photo, max_side=1024)
    assert image.mode == "RGB" and image.size == (585, 1024)  # 1400 x 800 crop, turned upright, downscaled
    raw = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    face = pool.Photo("f", "train", "pypi:x==1", "f.dat", "0" * 64, "CC0", raw_rgb=(2, 3))
    np.testing.assert_array_equal(np.asarray(pool.prepare(bz2.compress(raw.tobytes()), face, 1024)), raw)


def _png(seed: int, size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_build_checks_hashes_skips_finished_work_and_adds_dead_leaves(
    pool, tmp_path: Path, monkeypatch, fake_fetcher
) -> None:
    files = {"a.png": _png(0), "b.png": _png(1), "c.png": _png(2)}
    entries = [{"name": name[0], "split": split, "source": "pypi:fake==1", "path": name, "licence": "CC0",
                "sha256": hashlib.sha256(files[name]).hexdigest()} for name, split in
               [("a.png", "train"), ("b.png", "heldout"), ("c.png", "train")]]
    entries[2]["sha256"] = "0" * 64  # a changed source: reported and skipped, the rest is built
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"max_side": 1024, "photos": entries}))
    FakeFetcher, fetched = fake_fetcher(files)

    monkeypatch.setattr(pool, "MANIFEST", manifest)
    monkeypatch.setattr(pool, "_Fetcher", FakeFetcher)
    monkeypatch.setattr(pool, "DEAD_LEAVES_SIZE", 24)
    dest = tmp_path / "pool"
    assert pool.main([str(dest), "--dead-leaves", "2"]) == 1  # c failed
    assert sorted(p.name for p in (dest / "train").iterdir()) == ["a.png", "dead_leaves_0000.png",
                                                                 "dead_leaves_0001.png"]
    assert [p.name for p in (dest / "heldout").iterdir()] == ["b.png"]
    leaves = (dest / "train" / "dead_leaves_0001.png").read_bytes()

    entries[2]["sha256"] = hashlib.sha256(files["c.png"]).hexdigest()
    manifest.write_text(json.dumps({"max_side": 1024, "photos": entries}))
    assert pool.main([str(dest), "--dead-leaves", "2"]) == 0
    assert fetched == ["pypi:fake==1", "pypi:fake==1"] and (dest / "train" / "c.png").is_file()
    assert (dest / "train" / "dead_leaves_0001.png").read_bytes() != leaves  # palette now includes c

    assert pool.main([str(dest)]) == 0  # nothing to fetch; the dead leaves are no longer asked for
    assert len(fetched) == 2 and not list((dest / "train").glob("dead_leaves_*"))
    (dest / "train" / "stray.png").write_bytes(files["a.png"])
    assert pool.main([str(dest)]) == 2  # a folder holding images the script did not write
    entries[0]["source"] = "debian:other=2"
    manifest.write_text(json.dumps({"max_side": 1024, "photos": entries}))
    assert pool.main([str(tmp_path / "small"), "--sources", "debian:other"]) == 0  # a pool of some sources only
    assert [p.name for p in (tmp_path / "small").rglob("*.png")] == ["a.png"] and fetched[-1] == "debian:other=2"


def test_near_duplicates_finds_a_copy_only(pool, tmp_path: Path) -> None:
    for name, seed in [("one", 0), ("copy", 0), ("other", 5)]:
        Image.open(io.BytesIO(_png(seed, (64, 48)))).save(tmp_path / f"{name}.png")
    pairs = pool.near_duplicates([tmp_path / f"{name}.png" for name in ("one", "copy", "other")])
    assert [(a.stem, b.stem) for a, b in pairs] == [("one", "copy")]
