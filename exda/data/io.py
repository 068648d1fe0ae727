"""Read and write images as float32 H x W x C arrays in [0, 1], whatever format the user has.

Formats and how they become [0, 1]:
- PNG / JPEG / BMP (Pillow): 8-bit / 255, 16-bit / 65535; palette, LA and RGBA are expanded and the alpha
  channel is returned separately. EXIF orientation is applied. 16-bit PNGs with colour or alpha, which
  Pillow would cut to 8 bits, are read (and all 16-bit PNGs written) with pypng instead.
- TIFF (tifffile): the first page; unsigned integers / their max value, float clipped to [0, 1].
- ``.npy``: 2-D or H x W x C. Integer dtypes / their max value (negatives clipped); float arrays already
  in [0, 1] are kept, otherwise min-max normalised. C = 2 or 4 means the last channel is alpha.
- DICOM (pydicom): stored values * RescaleSlope + RescaleIntercept; CT is windowed to HU [-1024, 3071]
  (the AMIR protocol), other modalities are min-max normalised; the middle frame of a multi-frame file.
- NIfTI (nibabel, ``.nii`` / ``.nii.gz``): a 2-D image, or the middle axial slice (third axis after
  reorienting to RAS) of a 3-D volume (first volume of 4-D), min-max normalised; axes kept as stored.
DICOM, NIfTI, ``.npy`` and float TIFF report ``bit_depth`` 16 (more than 8 bits of source precision).
NaN / Inf in float data (``.npy``, float TIFF) become the finite minimum (NaN, -Inf) or maximum (+Inf);
``LoadedImage.nonfinite`` counts them. An image of more than ``max_pixels`` pixels (default: Pillow's
decompression-bomb limit) is refused from its header, before it is decoded.

Saving: PNG / TIFF (8 or 16 bit), ``.npy`` (float32), and JPEG / WebP (8 bit, ``quality``; JPEG drops alpha).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from exda.atomic import atomic_write
from exda.errors import UserError

IMAGE_SUFFIXES: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".npy", ".dcm", ".nii", ".nii.gz",
)
PHOTO_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")  # Pillow reads them
SAVE_SUFFIXES: tuple[str, ...] = (".png", ".tif", ".tiff", ".npy", ".jpg", ".jpeg", ".webp")
LOSSY_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".webp")  # 8 bit only; quality applies
DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's decompression-bomb error limit (2 x Image.MAX_IMAGE_PIXELS)
_PILLOW_LIMIT = threading.Lock()  # Pillow's limit is a module global: swap it under a lock


@dataclass
class LoadedImage:
    """An image in [0, 1] with its alpha kept aside, so restoration sees only colour channels."""

    pixels: np.ndarray  # float32, H x W x C in [0, 1], C in {1, 3}
    alpha: np.ndarray | None  # float32 H x W in [0, 1], or None
    bit_depth: int  # 8 or 16: source precision
    path: Path
    nonfinite: int = 0  # NaN / Inf values replaced when reading float data


def image_suffix(path: str | Path) -> str:
    """Lower-case suffix, treating ``.nii.gz`` as one suffix."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def image_stem(path: str | Path) -> str:
    """The file name without its image suffix (``scan.nii.gz`` -> ``scan``)."""
    name = Path(path).name
    return name[: len(name) - len(image_suffix(name))]


def list_images(folder: str | Path) -> list[Path]:
    """Images directly inside ``folder`` (not recursive, hidden files skipped), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"not a folder: {folder}")
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and image_suffix(p) in IMAGE_SUFFIXES
    )


class TooManyPixels(UserError):
    """An image refused from its header for having more than ``max_pixels`` pixels. Carries its size so
    that a caller (``exda serve``) can word its own message; constructible from the message alone, as a
    DataLoader worker re-raises it."""

    def __init__(self, message: str, *, height: int = 0, width: int = 0, max_pixels: int = 0) -> None:
        super().__init__(message)
        self.height, self.width, self.max_pixels = height, width, max_pixels


def check_pixels(path: Path, height: int, width: int, max_pixels: int) -> None:
    """Refuse an image larger than ``max_pixels`` before decoding it (a decompression bomb guard)."""
    if height * width > max_pixels:
        raise TooManyPixels(
            f"cannot read image {path}: {width}x{height} = {height * width:,} pixels is more than the limit "
            f"{max_pixels:,} (a guard against decompression bombs); pass --max-pixels {height * width} "
            "to allow it",
            height=height, width=width, max_pixels=max_pixels,
        )


def load_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Load any supported image as float32 H x W x C (C 1 or 3) in [0, 1] plus optional alpha.

    Every failure (missing, unreadable, corrupt, too large, unsupported layout) is a UserError naming
    the file."""
    path = Path(path)
    suffix = image_suffix(path)
    if suffix not in IMAGE_SUFFIXES:
        expected = ", ".join(IMAGE_SUFFIXES)
        raise UserError(f"unsupported image type '{suffix}' (expected one of {expected}): {path}")
    if not path.is_file():
        raise UserError(f"image not found: {path}")
    if path.stat().st_size == 0:
        raise UserError(f"cannot read image {path}: the file is empty (0 bytes)")
    readers = {".npy": _read_npy, ".dcm": _read_dicom, ".nii": _read_nifti, ".nii.gz": _read_nifti,
               ".tif": _read_tiff, ".tiff": _read_tiff}
    try:
        data, bit_depth = readers.get(suffix, _read_pillow)(path, max_pixels)
    except UserError:
        raise
    except MemoryError:
        raise UserError(f"cannot read image {path}: not enough memory to decode it") from None
    except Exception as err:  # every decoder has its own exception types; the user needs one line
        message = " ".join(str(err).split())  # one line, whatever the decoder wrote
        raise UserError(f"cannot read image {path}: {type(err).__name__}: {message}") from err
    if not np.issubdtype(data.dtype, np.floating):
        raise UserError(f"cannot read image {path}: values of type {data.dtype} are not numbers")
    nonfinite = int(np.count_nonzero(~np.isfinite(data)))
    if nonfinite:
        data = _replace_nonfinite(data, path)
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3 or data.shape[2] not in (1, 2, 3, 4) or data.shape[0] == 0 or data.shape[1] == 0:
        raise UserError(f"cannot read image {path}: unsupported array shape {data.shape}")
    alpha = None
    if data.shape[2] in (2, 4):
        data, alpha = data[:, :, :-1], np.ascontiguousarray(data[:, :, -1])
    return LoadedImage(np.ascontiguousarray(data, dtype=np.float32), alpha, bit_depth, path, nonfinite)


def _replace_nonfinite(data: np.ndarray, path: Path) -> np.ndarray:
    finite = np.isfinite(data)
    if not finite.any():
        raise UserError(f"cannot read image {path}: it holds no finite values (all NaN or Inf)")
    low, high = float(data[finite].min()), float(data[finite].max())
    return np.nan_to_num(data, nan=low, posinf=high, neginf=low)


def _scale_array(arr: np.ndarray) -> tuple[np.ndarray, int]:
    """Integers / their dtype max (8 bits reports 8), bool as 0/1, float clipped to [0, 1]."""
    if not (arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"values of type {arr.dtype} are not real numbers")
    if arr.dtype == np.bool_:
        return arr.astype(np.float32), 8
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        scaled = np.clip(arr.astype(np.float64), 0, None) / info.max
        return scaled.astype(np.float32), 8 if info.bits <= 8 else 16
    arr = arr.astype(np.float32)
    return np.where(np.isfinite(arr), np.clip(arr, 0.0, 1.0), arr), 16  # NaN / Inf left to load_image


def _min_max(arr: np.ndarray) -> np.ndarray:
    """Stretch the finite values to [0, 1]; NaN / Inf stay as they are, for load_image to replace."""
    arr = arr.astype(np.float64)
    finite = np.isfinite(arr)
    if not finite.any():
        return arr.astype(np.float32)
    low, high = float(arr[finite].min()), float(arr[finite].max())
    if high <= low:
        return np.where(finite, 0.0, arr).astype(np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        return ((arr - low) / (high - low)).astype(np.float32)


def _read_pillow(path: Path, max_pixels: int) -> tuple[np.ndarray, int]:
    from PIL import Image, ImageOps

    png16 = _read_png16_colour(path, max_pixels) if path.suffix.lower() == ".png" else None
    if png16 is not None:
        return png16, 16
    with _PILLOW_LIMIT:
        previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # checked below, against max_pixels
        try:
            opened = Image.open(path)  # reads the header only
        finally:
            Image.MAX_IMAGE_PIXELS = previous
    with opened:
        check_pixels(path, opened.height, opened.width, max_pixels)
        image = ImageOps.exif_transpose(opened)
    if image.mode.startswith("I;16") or image.mode == "I":
        return np.clip(np.asarray(image, dtype=np.float32), 0, 65535) / 65535.0, 16
    if image.mode == "F":
        return _scale_array(np.asarray(image))
    has_alpha = "A" in image.getbands() or (image.mode == "P" and "transparency" in image.info)
    if image.mode in ("1", "L", "LA", "La"):
        target = "LA" if has_alpha else "L"
    else:
        target = "RGBA" if has_alpha else "RGB"
    return np.asarray(image.convert(target), dtype=np.float32) / 255.0, 8


def _read_png16_colour(path: Path, max_pixels: int) -> np.ndarray | None:
    """16-bit PNG with colour or alpha (Pillow keeps only 16-bit gray) via pypng; None for any other file.

    ``asDirect`` turns a ``tRNS`` colour key into an alpha channel and applies ``sBIT`` (fewer significant
    bits), so values are scaled by the bit depth it reports.
    """
    import png

    with open(path, "rb") as fh:
        reader = png.Reader(file=fh)
        try:
            reader.validate_signature()
        except (png.FormatError, EOFError):
            return None  # not a PNG at all: Pillow identifies it or reports the error
        reader.preamble()
        if reader.bitdepth != 16 or reader.color_type not in (2, 4, 6):
            return None
        check_pixels(path, reader.height, reader.width, max_pixels)
        width, height, rows, info = reader.asDirect()
        data = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    data = data.reshape(height, width, info["planes"])
    return data.astype(np.float32) / np.float32(2 ** info["bitdepth"] - 1)


def _read_tiff(path: Path, max_pixels: int) -> tuple[np.ndarray, int]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        check_pixels(path, page.imagelength, page.imagewidth, max_pixels)
        arr, axes = page.asarray(), page.axes
    if "S" in axes and axes.index("S") < axes.index("X"):  # planar storage: samples first
        arr = np.moveaxis(arr, axes.index("S"), -1)
    return _scale_array(np.squeeze(arr) if arr.ndim > 3 else arr)


def _read_npy(path: Path, max_pixels: int) -> tuple[np.ndarray, int]:
    header = np.load(path, mmap_mode="r", allow_pickle=False)  # shape and dtype without reading the data
    if header.ndim >= 2:
        check_pixels(path, header.shape[0], header.shape[1], max_pixels)
    del header
    arr = np.load(path, allow_pickle=False)
    finite = arr[np.isfinite(arr)] if np.issubdtype(arr.dtype, np.floating) else arr[:0]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        return _min_max(arr), 16
    return _scale_array(arr)[0], 16


def _read_dicom(path: Path, max_pixels: int) -> tuple[np.ndarray, int]:
    import pydicom

    ds = pydicom.dcmread(path)
    check_pixels(path, int(getattr(ds, "Rows", 0)), int(getattr(ds, "Columns", 0)), max_pixels)
    if int(getattr(ds, "SamplesPerPixel", 1)) != 1:
        raise UserError(f"only single-channel DICOM is supported: {path}")
    arr = ds.pixel_array
    if arr.ndim == 3:  # multi-frame
        arr = arr[arr.shape[0] // 2]
    values = arr.astype(np.float64) * float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
    values += float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    if str(getattr(ds, "Modality", "")).upper() == "CT":
        return np.clip((values + 1024.0) / 4095.0, 0.0, 1.0).astype(np.float32), 16
    return _min_max(values), 16


def _read_nifti(path: Path, max_pixels: int) -> tuple[np.ndarray, int]:
    import nibabel as nib

    image = nib.load(path)
    if len(image.shape) >= 2:
        check_pixels(path, image.shape[0], image.shape[1], max_pixels)
    if len(image.shape) >= 3:
        image = nib.as_closest_canonical(image)
    data = np.asarray(image.dataobj)
    while data.ndim > 3:
        data = data[..., 0]
    if data.ndim == 3:
        data = data[:, :, data.shape[2] // 2]
    return _min_max(data), 16


def save_image(
    path: str | Path, pixels: np.ndarray, bit_depth: int = 8, alpha: np.ndarray | None = None,
    quality: int = 95,
) -> None:
    """Write H x W (x C) pixels in [0, 1] as PNG / TIFF (8 or 16 bit), float32 ``.npy`` or JPEG / WebP
    (8 bit at ``quality`` 1-100; JPEG has no alpha, so it is dropped), atomically.

    ``.npy`` stores float32 values with alpha appended as the last channel, so it reloads exactly.
    """
    path = Path(path)
    suffix = image_suffix(path)
    if suffix not in SAVE_SUFFIXES:
        raise UserError(f"cannot save '{suffix}' files (use one of {', '.join(SAVE_SUFFIXES)}): {path}")
    if bit_depth not in (8, 16):
        raise UserError(f"bit_depth must be 8 or 16, got {bit_depth}")
    if not 1 <= quality <= 100:
        raise UserError(f"quality must be 1-100, got {quality}")
    arr = np.asarray(pixels, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise ValueError(f"pixels must be H x W, H x W x 1 or H x W x 3, got {arr.shape}")
    if alpha is not None and suffix in (".jpg", ".jpeg"):
        alpha = None  # JPEG cannot store it
    if alpha is not None:
        alpha = np.asarray(alpha, dtype=np.float32).reshape(arr.shape[0], arr.shape[1], 1)
        arr = np.concatenate([arr, alpha], axis=2)
    arr = np.clip(np.nan_to_num(arr), 0.0, 1.0)
    if suffix == ".npy":
        atomic_write(path, lambda tmp: _write_npy(tmp, arr))
    elif suffix in LOSSY_SUFFIXES:
        atomic_write(path, lambda tmp: _write_lossy(tmp, arr, suffix, quality))
    else:
        atomic_write(path, lambda tmp: _write_raster(tmp, arr, bit_depth, suffix))


def _write_npy(target: Path, arr: np.ndarray) -> None:
    with open(target, "wb") as fh:  # a file handle, so numpy does not append ".npy" to the temp name
        np.save(fh, arr)


def _write_lossy(target: Path, arr: np.ndarray, suffix: str, quality: int) -> None:
    """JPEG / WebP at 8 bits through Pillow (gray stays gray in JPEG; WebP stores gray as RGB)."""
    from PIL import Image

    ints = np.round(arr * 255.0).astype(np.uint8)
    channels = ints.shape[2]
    image = Image.fromarray(ints[:, :, 0] if channels == 1 else ints)  # L, LA, RGB or RGBA
    if suffix == ".webp" and image.mode in ("L", "LA"):
        image = image.convert("RGBA" if image.mode == "LA" else "RGB")
    fmt = "WEBP" if suffix == ".webp" else "JPEG"
    image.save(target, format=fmt, quality=quality)


def _write_raster(target: Path, arr: np.ndarray, bit_depth: int, suffix: str) -> None:
    """Quantise to 8/16 bits and write PNG (Pillow at 8 bits, pypng at 16) or TIFF (tifffile)."""
    scale, dtype = (255.0, np.uint8) if bit_depth == 8 else (65535.0, np.uint16)
    ints = np.round(arr * scale).astype(dtype)
    channels = ints.shape[2]
    if suffix == ".png":
        if bit_depth == 16:  # Pillow cannot write 16-bit colour PNG
            import png

            height, width = ints.shape[:2]
            writer = png.Writer(width, height, greyscale=channels < 3, alpha=channels in (2, 4), bitdepth=16)
            with open(target, "wb") as fh:
                writer.write(fh, (row.tolist() for row in ints.reshape(height, -1)))
            return
        from PIL import Image

        Image.fromarray(ints[:, :, 0] if channels == 1 else ints).save(target, format="PNG")
        return
    import tifffile

    color = channels >= 3
    tifffile.imwrite(
        target,
        ints[:, :, 0] if channels == 1 else ints,
        photometric="rgb" if color else "minisblack",
        extrasamples=("unassalpha",) if channels in (2, 4) else None,
    )


def load_photo(path: str | Path, max_side: int) -> np.ndarray:
    """An 8-bit photo as H x W x 3 float32 in [0, 1], downscaled (Lanczos) so its longer side is at most
    ``max_side`` px: the evaluation photos of the benchmarks. An unreadable file is one UserError line."""
    from PIL import Image

    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
    except OSError as err:
        raise UserError(f"cannot read {path}: {err}") from err
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.float32) / 255.0


def load_photos(folder: str | Path, max_side: int, hint: str = "") -> dict[str, np.ndarray]:
    """{file stem: :func:`load_photo`} for the PNG / JPEG / BMP / WebP / TIFF images directly in ``folder``,
    sorted by name. No such image is one UserError line (``hint`` appended: how to make them)."""
    folder = Path(folder)
    paths = [p for p in list_images(folder) if image_suffix(p) in PHOTO_SUFFIXES] if folder.is_dir() else []
    if not paths:
        raise UserError(f"no photos in {folder}" + (f": {hint}" if hint else ""))
    return {image_stem(path): load_photo(path, max_side) for path in paths}


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """H x W x C (or H x W) array -> C x H x W float32 tensor."""
    arr = np.asarray(pixels, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"expected H x W x C pixels, got shape {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """C x H x W tensor -> H x W x C float32 array."""
    if t.ndim != 3:
        raise ValueError(f"expected a C x H x W tensor, got shape {tuple(t.shape)}")
    return np.ascontiguousarray(t.detach().to("cpu", torch.float32).permute(1, 2, 0).numpy())
