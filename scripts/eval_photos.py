"""Build the reserved evaluation photos: clean photos the default photo model never trains on (issue 19).

    python scripts/eval_photos.py [DEST] [--pool POOL]
        ->  DEST/*.png       the photos (default DEST: ~/.cache/exda/eval-photos)
            DEST/eval.json   what was written, from which source bytes (lets a rerun skip finished work)

The manifest ``scripts/eval_photos.json`` pins every photo as ``scripts/photo_pool.json`` does: a Debian
wallpaper / background package or pyiqa's wheel (the sources photo_pool.json reserves: never trained on),
the file inside it, the sha256 of that file, its licence and its original size, and where the file carries
a border that is no part of the photo (a black column, a bright line), the crop that cuts it. Each photo is
fetched and prepared exactly as the photo pool's (scripts/photo_pool.py ``prepare``: cropped, upright, sRGB,
Lanczos-downscaled so the longer side is at most ``max_side``, 1024 px) and saved as PNG. A source or photo
that fails is reported on one line and skipped; the exit status is then 1.

Then every eval photo is compared with every photo of the training pool (POOL/train and POOL/heldout, default
~/.cache/exda/photo-pool-v2, as ``python scripts/photo_pool.py POOL`` builds it): the sha256 of the decoded
pixels, and the 8 x 8 difference hash of a tiny grey thumbnail (photo_pool.near_duplicates). A match means
the evaluation is not independent: it is printed and the exit status is 3.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from exda.atomic import atomic_write

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers beside this file, however it is loaded
from package_files import Fetcher as _Fetcher  # noqa: E402
from package_files import SourceError, check_sha256, fetch_sources  # noqa: E402
from photo_pool import SPLITS, Photo, near_duplicates, prepare  # noqa: E402

MANIFEST = Path(__file__).with_suffix(".json")
DEFAULT_DEST = Path("~/.cache/exda/eval-photos")
DEFAULT_POOL = Path("~/.cache/exda/photo-pool-v2")
FIELDS = ("name", "source", "path", "sha256", "licence", "original_size")
OPTIONAL = ("crop",)  # left, top, right, bottom in source pixels: cuts a border the source file carries


def load_manifest(path: Path) -> tuple[list[dict], int]:
    """The manifest's photos (dicts with FIELDS, maybe OPTIONAL) and the longest side (px) they are downscaled to."""
    data = json.loads(path.read_text())
    for entry in data["photos"]:
        if not set(FIELDS) <= set(entry) <= {*FIELDS, *OPTIONAL}:
            raise ValueError(f"{path}: photo {entry.get('name')!r} has fields {sorted(entry)}, expected {FIELDS} "
                             f"and optionally {OPTIONAL}")
    return data["photos"], int(data["max_side"])


def pixel_digest(path: Path) -> str:
    """sha256 of the decoded RGB pixels and their shape: equal for equal images, whatever the file's encoding."""
    pixels = np.asarray(Image.open(path).convert("RGB"))
    return hashlib.sha256(str(pixels.shape).encode() + pixels.tobytes()).hexdigest()


def find_duplicates(evaluation: list[Path], pool: list[Path]) -> list[tuple[Path, Path, str]]:
    """(eval photo, pool photo, how) for each eval photo equal to or looking like a pool photo."""
    pool_digests = {pixel_digest(path): path for path in pool}
    found = [(path, pool_digests[digest], "same pixels") for path in evaluation
             if (digest := pixel_digest(path)) in pool_digests]
    exact = {(a, b) for a, b, _ in found}
    is_eval = set(evaluation)
    for a, b in near_duplicates([*evaluation, *pool]):
        if (a in is_eval) != (b in is_eval):
            pair = (a, b) if a in is_eval else (b, a)
            if pair not in exact:
                found.append((*pair, "near-duplicate (tiny-thumbnail hash)"))
    return found


def pool_photos(pool: Path) -> list[Path]:
    """The training pool's photos (train and held-out); the dead-leaves images are synthetic, left out."""
    return [path for split in SPLITS for path in sorted((pool / split).glob("*.png"))
            if not path.name.startswith("dead_leaves_")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path, nargs="?", default=DEFAULT_DEST,
                        help=f"folder the photos are written to (default {DEFAULT_DEST})")
    parser.add_argument("--pool", type=Path, default=DEFAULT_POOL,
                        help=f"the training photo pool to check against (default {DEFAULT_POOL})")
    args = parser.parse_args(argv)
    start = time.monotonic()
    dest, pool = args.dest.expanduser(), args.pool.expanduser()
    if not (pool / "train").is_dir():
        print(f"eval_photos: no photo pool in {pool}: build it with python scripts/photo_pool.py {pool}, "
              "or pass --pool", file=sys.stderr)
        return 2
    photos, max_side = load_manifest(MANIFEST)
    record_path = dest / "eval.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    failures: list[str] = []
    record = _build(photos, max_side, dest, record, failures)
    for path in dest.glob("*.png"):  # photos an earlier manifest held
        if path.stem not in record:
            path.unlink()
    atomic_write(record_path, lambda tmp: tmp.write_text(json.dumps(record, indent=1) + "\n"))
    built = Counter(entry["source"] for entry in photos if entry["name"] in record)
    for source, total in sorted(Counter(entry["source"] for entry in photos).items()):
        print(f"  {source:<50} {built[source]:3d} / {total}")
    print(f"eval_photos: {len(record)} of {len(photos)} photos in {dest} ({time.monotonic() - start:.0f} s)")
    if failures:
        print(f"eval_photos: {len(failures)} failed: {'; '.join(failures)}", file=sys.stderr)
    written = sorted(dest / f"{name}.png" for name in record)
    against = pool_photos(pool)
    duplicates = find_duplicates(written, against)
    for path, match, how in duplicates:
        print(f"eval_photos: DUPLICATE {path.stem} of pool photo {match.parent.name}/{match.stem}: {how}",
              file=sys.stderr)
    if duplicates:
        print(f"eval_photos: {len(duplicates)} eval photos are in the training pool: the evaluation is not "
              "independent; take them out of scripts/eval_photos.json", file=sys.stderr)
        return 3
    print(f"eval_photos: none of the {len(written)} photos equals or looks like any of the {len(against)} "
          f"pool photos in {pool}")
    return 1 if failures else 0


def _build(photos: list[dict], max_side: int, dest: Path, record: dict, failures: list[str]) -> dict:
    """Fetch each source still needed and write its photos; returns {name: what was written} for DEST."""
    built, todo = {}, defaultdict(list)
    for entry in photos:
        done = record.get(entry["name"])
        if done and done["sha256"] == entry["sha256"] and done["max_side"] == max_side \
                and done.get("crop") == entry.get("crop") and (dest / f"{entry['name']}.png").is_file():
            built[entry["name"]] = done
        else:
            todo[entry["source"]].append(entry)
    if not todo:
        return built
    dest.mkdir(parents=True, exist_ok=True)
    wanted = {source: [entry["path"] for entry in group] for source, group in todo.items()}
    for source, files in fetch_sources(wanted, _Fetcher, "eval_photos", failures):
        for entry in todo[source]:
            try:
                built[entry["name"]] = _write_photo(entry, files.get(entry["path"]), max_side, dest)
            except SourceError as err:
                failures.append(f"{entry['name']}: {err}")
                print(f"eval_photos: FAILED {entry['name']} ({source} {entry['path']}): {err}", file=sys.stderr)
    return built


def _write_photo(entry: dict, data: bytes | None, max_side: int, dest: Path) -> dict:
    data = check_sha256(data, entry["sha256"])
    photo = Photo(name=entry["name"], split="eval", source=entry["source"], path=entry["path"],
                  sha256=entry["sha256"], licence=entry["licence"],
                  crop=tuple(entry["crop"]) if entry.get("crop") else None)
    try:
        image = prepare(data, photo, max_side)
    except (OSError, ValueError) as err:
        raise SourceError(f"cannot decode: {err}") from err
    path = dest / f"{entry['name']}.png"
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))
    return {"source": entry["source"], "sha256": entry["sha256"], "licence": entry["licence"],
            "original_size": entry["original_size"], "crop": entry.get("crop"), "size": list(image.size),
            "max_side": max_side}


if __name__ == "__main__":
    sys.exit(main())
