"""Image I/O: round trips per format, medical readers, errors, atomic writes."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import png
import pydicom
import pytest
import tifffile
import torch
from PIL import Image
from pydicom.data import get_testdata_file

from exda.data.io import IMAGE_SUFFIXES, list_images, load_image, load_photos, save_image, to_numpy, to_tensor
from exda.errors import UserError

H, W = 31, 37


def _pixels(channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((H, W, channels), dtype=np.float32)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff"])
@pytest.mark.parametrize("bit_depth", [8, 16])
@pytest.mark.parametrize("channels", [1, 3])
def test_raster_round_trip(tmp_path: Path, suffix: str, bit_depth: int, channels: int) -> None:
    pixels = _pixels(channels)
    path = tmp_path / f"img{suffix}"
    save_image(path, pixels, bit_depth=bit_depth)
    loaded = load_image(path)
    assert loaded.pixels.shape == (H, W, channels) and loaded.pixels.dtype == np.float32
    assert loaded.bit_depth == bit_depth and loaded.alpha is None and loaded.path == path
    step = 1 / (255 if bit_depth == 8 else 65535)
    np.testing.assert_allclose(loaded.pixels, pixels, atol=step / 2 + 1e-6)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".npy"])
@pytest.mark.parametrize("bit_depth", [8, 16])
def test_alpha_is_kept_apart(tmp_path: Path, suffix: str, bit_depth: int) -> None:
    pixels, alpha = _pixels(3), _pixels(1, seed=1)[:, :, 0]
    path = tmp_path / f"rgba{suffix}"
    save_image(path, pixels, bit_depth=bit_depth, alpha=alpha)
    loaded = load_image(path)
    assert loaded.pixels.shape == (H, W, 3) and loaded.alpha is not None
    np.testing.assert_allclose(loaded.alpha, alpha, atol=1 / 255)
    np.testing.assert_allclose(loaded.pixels, pixels, atol=1 / 255)


def test_16bit_colour_png_is_readable_by_pillow(tmp_path: Path) -> None:
    """Our 16-bit colour PNG writer produces files other tools read (Pillow sees the high bytes)."""
    pixels = _pixels(3)
    save_image(tmp_path / "c16.png", pixels, bit_depth=16)
    seen = np.asarray(Image.open(tmp_path / "c16.png").convert("RGB"), dtype=np.float32) / 255
    np.testing.assert_allclose(seen, pixels, atol=1 / 255 + 1e-6)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("with_alpha", [False, True])
def test_16bit_png_round_trip_is_exact(tmp_path: Path, channels: int, with_alpha: bool) -> None:
    """Gray, gray+alpha, RGB and RGBA come back to the exact 16-bit level, and the file really is 16-bit."""
    rng = np.random.default_rng(channels)
    ints = rng.integers(0, 65536, (H, W, channels + with_alpha), dtype=np.uint16)
    ints[0, 0], ints[-1, -1] = 0, 65535
    values = ints / np.float32(65535)
    alpha = values[:, :, -1] if with_alpha else None
    path = tmp_path / "exact16.png"
    save_image(path, values[:, :, :channels], bit_depth=16, alpha=alpha)
    info = png.Reader(bytes=path.read_bytes()).read()[3]
    assert info["bitdepth"] == 16 and info["planes"] == channels + with_alpha
    loaded = load_image(path)
    assert loaded.bit_depth == 16 and loaded.pixels.shape == (H, W, channels)
    np.testing.assert_array_equal(np.round(loaded.pixels * 65535).astype(np.uint16), ints[:, :, :channels])
    if with_alpha:
        assert loaded.alpha is not None
        np.testing.assert_array_equal(np.round(loaded.alpha * 65535).astype(np.uint16), ints[:, :, -1])
    else:
        assert loaded.alpha is None


def test_16bit_gray_png_from_pillow(tmp_path: Path) -> None:
    """A 16-bit gray PNG from another writer (Pillow 'I;16') reads back at full precision."""
    ints = np.random.default_rng(3).integers(0, 65536, (H, W), dtype=np.uint16)
    ints[0, 0], ints[-1, -1] = 0, 65535
    written = Image.fromarray(ints)
    assert written.mode == "I;16"
    written.save(tmp_path / "pil16.png")
    assert png.Reader(bytes=(tmp_path / "pil16.png").read_bytes()).read()[3]["bitdepth"] == 16
    loaded = load_image(tmp_path / "pil16.png")
    assert loaded.bit_depth == 16 and loaded.alpha is None and loaded.pixels.shape == (H, W, 1)
    np.testing.assert_array_equal(np.round(loaded.pixels[:, :, 0] * 65535).astype(np.uint16), ints)


def test_interlaced_16bit_colour_png(tmp_path: Path) -> None:
    ints = np.random.default_rng(4).integers(0, 65536, (H, W, 3), dtype=np.uint16)
    with open(tmp_path / "adam7.png", "wb") as fh:
        png.Writer(W, H, greyscale=False, bitdepth=16, interlace=True).write(fh, ints.reshape(H, -1).tolist())
    loaded = load_image(tmp_path / "adam7.png")
    assert loaded.bit_depth == 16
    np.testing.assert_array_equal(np.round(loaded.pixels * 65535).astype(np.uint16), ints)


def test_palette_png_with_transparency_gives_alpha(tmp_path: Path) -> None:
    palette_image = Image.fromarray(np.arange(W * H, dtype=np.uint8).reshape(H, W) % 4, mode="L").convert("P")
    palette_image.info["transparency"] = 0
    palette_image.save(tmp_path / "p.png", transparency=0)
    loaded = load_image(tmp_path / "p.png")
    assert loaded.pixels.shape == (H, W, 3) and loaded.alpha is not None
    assert loaded.alpha.min() == 0.0 and loaded.alpha.max() == 1.0


def test_grayscale_jpeg_and_bmp(tmp_path: Path) -> None:
    gray = (_pixels(1)[:, :, 0] * 255).astype(np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.bmp")
    Image.fromarray(gray).save(tmp_path / "g.jpg", quality=95)
    np.testing.assert_array_equal(load_image(tmp_path / "g.bmp").pixels[:, :, 0], gray / np.float32(255))
    jpeg = load_image(tmp_path / "g.jpg")
    assert jpeg.pixels.shape == (H, W, 1) and jpeg.bit_depth == 8


def test_tiff_planar_and_float(tmp_path: Path) -> None:
    planar = (np.random.default_rng(0).random((3, H, W)) * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    expected = np.moveaxis(planar, 0, -1) / 65535
    np.testing.assert_allclose(load_image(tmp_path / "planar.tif").pixels, expected, atol=1e-6)
    tifffile.imwrite(tmp_path / "float.tif", np.linspace(-0.5, 1.5, H * W, dtype=np.float32).reshape(H, W))
    loaded = load_image(tmp_path / "float.tif")  # float TIFF is clipped to [0, 1]
    assert loaded.pixels.min() == 0.0 and loaded.pixels.max() == 1.0 and loaded.bit_depth == 16


def test_npy_scaling_rules(tmp_path: Path) -> None:
    pixels = _pixels(3)
    save_image(tmp_path / "f.npy", pixels)
    np.testing.assert_array_equal(load_image(tmp_path / "f.npy").pixels, pixels)
    np.save(tmp_path / "u16.npy", np.full((H, W), 65535, np.uint16))
    assert load_image(tmp_path / "u16.npy").pixels.max() == 1.0
    np.save(tmp_path / "hu.npy", np.linspace(-1000, 3000, H * W).reshape(H, W))
    loaded = load_image(tmp_path / "hu.npy")  # outside [0, 1]: min-max normalised
    assert loaded.pixels.min() == 0.0 and loaded.pixels.max() == 1.0 and loaded.bit_depth == 16


def test_dicom_ct_uses_hu_window() -> None:
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    loaded = load_image(path)
    assert loaded.pixels.shape == (128, 128, 1) and loaded.bit_depth == 16
    np.testing.assert_allclose(loaded.pixels[:, :, 0], np.clip((hu + 1024) / 4095, 0, 1), atol=1e-6)


def test_dicom_mr_is_min_max_normalised() -> None:
    loaded = load_image(get_testdata_file("MR_small.dcm"))
    assert loaded.pixels.shape == (64, 64, 1) and loaded.pixels.min() == 0 and loaded.pixels.max() == 1


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_middle_axial_slice(tmp_path: Path, suffix: str) -> None:
    volume = np.random.default_rng(0).random((H, W, 5)).astype(np.float32) * 100
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / f"vol{suffix}")
    loaded = load_image(tmp_path / f"vol{suffix}")
    middle = volume[:, :, 2]
    expected = (middle - middle.min()) / (middle.max() - middle.min())
    np.testing.assert_allclose(loaded.pixels[:, :, 0], expected, atol=1e-5)
    assert tmp_path / f"vol{suffix}" in list_images(tmp_path)


def test_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(UserError, match="broken.png"):
        load_image(tmp_path / "broken.png")
    with pytest.raises(UserError, match="cannot save '.gif'"):
        save_image(tmp_path / "out.gif", _pixels(3))
    with pytest.raises(UserError, match="not a folder"):
        list_images(tmp_path / "nowhere")


def test_save_is_atomic_and_list_images_filters(tmp_path: Path) -> None:
    save_image(tmp_path / "sub" / "b.png", _pixels(3))
    save_image(tmp_path / "sub" / "a.tif", _pixels(1))
    (tmp_path / "sub" / "notes.txt").write_text("x")
    (tmp_path / "sub" / "nested").mkdir()
    save_image(tmp_path / "sub" / "nested" / "c.png", _pixels(1))
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["a.tif", "b.png", "nested", "notes.txt"]
    assert [p.name for p in list_images(tmp_path / "sub")] == ["a.tif", "b.png"]
    assert ".nii.gz" in IMAGE_SUFFIXES


def test_tensor_conversions_round_trip() -> None:
    pixels = _pixels(3)
    tensor = to_tensor(pixels)
    assert tensor.shape == (3, H, W) and tensor.dtype == torch.float32
    np.testing.assert_array_equal(to_numpy(tensor), pixels)
    assert to_tensor(pixels[:, :, 0]).shape == (1, H, W)


def test_load_photos_downscales_the_photos_only_and_names_them(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    Image.fromarray(pixels[:, :, 0]).save(tmp_path / "grey.jpg")  # grey becomes RGB
    np.save(tmp_path / "array.npy", pixels)  # not a photo: skipped
    (tmp_path / "notes.txt").write_text("x")
    photos = load_photos(tmp_path, 45)
    assert list(photos) == ["grey", "wide"]
    assert photos["wide"].shape == (30, 45, 3) and photos["grey"].shape == (30, 45, 3)
    assert photos["wide"].dtype == np.float32 and 0.0 <= photos["wide"].min() and photos["wide"].max() <= 1.0
    full = load_photos(tmp_path, 1000)["wide"]  # no upscaling; exact levels at full size
    np.testing.assert_array_equal(full, pixels.astype(np.float32) / 255)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="cannot read .*broken.png"):
        load_photos(tmp_path, 45)
    with pytest.raises(UserError, match=r"^no photos in .*empty: make them$"):
        load_photos(tmp_path / "empty", 45, "make them")
