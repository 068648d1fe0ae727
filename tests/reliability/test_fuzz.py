"""Property-based (hypothesis) fuzzing of the image readers, the folder layouts and ``exda restore``.

The property everywhere: a valid result, or a UserError (one line naming the file); never another
exception, never a hang. Example counts are small so the file runs in seconds.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from exda.cli import main
from exda.data.io import IMAGE_SUFFIXES, load_image, save_image
from exda.data.layouts import build_dataset
from exda.errors import UserError

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# Names with spaces, accents, CJK and emoji; no path separators, NUL or a leading dot (hidden files).
NAMES = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\\0"), min_size=1, max_size=12
).filter(lambda s: not s.startswith(".") and s.strip() == s and len(s.encode()) < 100)
DTYPES = st.sampled_from(["uint8", "uint16", "int8", "int32", "float16", "float32", "float64", "bool"])


def _valid(image, path: Path) -> None:
    assert image.pixels.dtype == np.float32 and image.pixels.ndim == 3 and image.pixels.shape[2] in (1, 3)
    assert np.isfinite(image.pixels).all() and image.pixels.min() >= 0 and image.pixels.max() <= 1, path
    if image.alpha is not None:
        assert image.alpha.shape == image.pixels.shape[:2] and np.isfinite(image.alpha).all()


def _load_or_user_error(path: Path) -> None:
    try:
        image = load_image(path)
    except UserError as err:
        assert "\n" not in str(err) and str(path) in str(err)
    else:
        _valid(image, path)


def _png_prefix() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(out, format="PNG")
    return out.getvalue()


@FAST
@given(data=st.binary(max_size=600), suffix=st.sampled_from(IMAGE_SUFFIXES), keep=st.integers(0, 80))
def test_random_bytes_load_or_fail_with_one_line(data: bytes, suffix: str, keep: int) -> None:
    """Random bytes, and a real PNG's first bytes followed by random ones (a corrupted file)."""
    with tempfile.TemporaryDirectory() as folder:
        for i, blob in enumerate((data, _png_prefix()[:keep] + data)):
            path = Path(folder) / f"f{i}{suffix}"
            path.write_bytes(blob)
            _load_or_user_error(path)


@FAST
@given(
    arr=arrays(DTYPES, st.tuples(st.integers(0, 9), st.integers(0, 9)) | st.tuples(
        st.integers(0, 6), st.integers(0, 6), st.integers(0, 6)),
        elements=None),
)
def test_random_npy_arrays_load_in_range_or_fail_with_one_line(arr: np.ndarray) -> None:
    """Any dtype, shape (empty included) and value (NaN, Inf, negatives, huge) of a .npy input."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "a.npy"
        np.save(path, arr)
        _load_or_user_error(path)


@FAST
@given(
    h=st.integers(1, 12), w=st.integers(1, 12), c=st.sampled_from([1, 3]), alpha=st.booleans(),
    suffix=st.sampled_from([".png", ".tif", ".npy"]), bits=st.sampled_from([8, 16]), seed=st.integers(0, 99),
    name=NAMES,
)
def test_lossless_save_load_round_trip(
    h: int, w: int, c: int, alpha: bool, suffix: str, bits: int, seed: int, name: str
) -> None:
    rng = np.random.default_rng(seed)
    pixels = rng.random((h, w, c)).astype(np.float32)
    mask = rng.random((h, w)).astype(np.float32) if alpha else None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{name}{suffix}"
        save_image(path, pixels, bit_depth=bits, alpha=mask)
        loaded = load_image(path)
    tol = 0 if suffix == ".npy" else 0.5 / (255 if bits == 8 else 65535) + 1e-6
    np.testing.assert_allclose(loaded.pixels, pixels, atol=tol)
    if alpha:
        np.testing.assert_allclose(loaded.alpha, mask, atol=tol)


@FAST
@given(names=st.lists(NAMES, min_size=1, max_size=4, unique_by=str.casefold), sizes=st.data())
def test_paired_layout_with_odd_names_and_sizes(names: list[str], sizes: st.DataObject) -> None:
    """Unicode / space names pair up; a size mismatch or bad file is a UserError naming it."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "input").mkdir()
        (root / "target").mkdir()
        for name in names:
            h, w = sizes.draw(st.integers(1, 9)), sizes.draw(st.integers(1, 9))
            gh = h if sizes.draw(st.booleans()) else h + 1
            Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(root / "input" / f"{name}.png")
            if sizes.draw(st.booleans()):
                Image.fromarray(np.zeros((gh, w, 3), np.uint8)).save(root / "target" / f"{name}.png")
            else:
                (root / "target" / f"{name}.png").write_bytes(b"broken")
        dataset = build_dataset("paired", root, "test")
        for i in range(len(dataset)):
            try:
                item = dataset[i]
            except UserError as err:
                assert "\n" not in str(err) and ("size mismatch" in str(err) or "cannot read image" in str(err))
            else:
                assert item["lq"].shape == item["gt"].shape


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(st.tuples(NAMES, st.sampled_from([".png", ".jpg", ".npy"]), st.booleans(), st.binary(
    max_size=40)), min_size=1, max_size=4, unique_by=lambda f: f[0].casefold()))
def test_restore_folder_of_odd_names_and_random_files(
    tiny_checkpoint: Path, files: list[tuple[str, str, bool, bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        src, out = Path(folder) / "in put ü", Path(folder) / "out"
        src.mkdir()
        good = set()
        for name, suffix, ok, junk in files:
            path = src / f"{name}{suffix}"
            if ok:
                save_image(path, np.full((5, 6, 3), 0.5, np.float32))
                good.add(name)
            else:
                path.write_bytes(junk)
        rc = main(["restore", str(src), "-o", str(out), "--checkpoint", str(tiny_checkpoint)])
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err
        restored = {p.name[: -len(p.suffix)] for p in out.iterdir()} if out.is_dir() else set()
        assert good <= restored  # every good file restored, whatever else the folder holds
        assert rc == (0 if len(restored) == len(files) else 1)
