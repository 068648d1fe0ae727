"""The medical-pool manifest and builder (scripts/medical_pool.py), offline: packages are faked, never fetched."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

REPO = Path(__file__).resolve().parents[2]
RESERVED = re.compile(r"pydicom-data|desktop-base|wallpaper|background|pyiqa")


@pytest.fixture(scope="module")
def pool(load_script):
    return load_script("medical_pool")


def test_manifest_is_complete_and_keeps_the_heldout_subjects_apart(pool) -> None:
    files = pool.load_manifest(pool.MANIFEST)
    outputs = [name for entry in files for name, _, _ in entry.outputs()]
    assert len(set(outputs)) == len(outputs) and len({entry.name for entry in files}) == len(files)
    assert len({(entry.source, entry.path) for entry in files}) == len(files)
    for entry in files:
        assert re.fullmatch(r"[a-z0-9_]+", entry.name) and entry.split in pool.SPLITS and entry.licence
        assert re.fullmatch(r"pypi:[\w.-]+==[\w.]+|debian:[\w.+-]+=[\w.:~+-]+", entry.source), entry.source
        assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256) and not RESERVED.search(entry.source)
        assert entry.modality in {"CT", "MR T1", "MR T2", "MR T2*", "MR PD"}
        for plane, indices in (entry.slices or {}).items():
            assert plane in pool.PLANE_AXES and indices == sorted(set(indices)) and min(indices) >= 0
    train = [entry for entry in files if entry.split == "train"]
    heldout = [entry for entry in files if entry.split == "heldout"]
    assert not {entry.subject for entry in train} & {entry.subject for entry in heldout}
    assert {entry.modality for entry in heldout} >= {"CT", "MR T1", "MR T2", "MR PD"}
    assert sum(len(entry.outputs()) for entry in heldout) >= 6
    assert sum(len(entry.outputs()) for entry in train) >= 40
    assert any(entry.path.endswith("/CT_small.dcm") for entry in heldout)
    manifest = json.loads(pool.MANIFEST.read_text())
    assert "pydicom-data" in manifest["description"] and all(item["why"] for item in manifest["excluded"])


def _nifti_gz(volume: np.ndarray, affine: np.ndarray) -> bytes:
    return gzip.compress(nib.Nifti1Image(volume, affine).to_bytes())


def test_volumes_are_reoriented_and_shown_as_radiologists_do(pool) -> None:
    # A 37 x 31 x 9 volume stored LPS (x towards the patient's left, y towards the back), 1 mm voxels.
    volume = np.zeros((37, 31, 9), np.float32)
    volume[0, 0, 4] = 1.0  # the patient's right-most, front-most voxel of the middle axial plane
    entry = pool.MedicalFile("v", "train", "pypi:x==1", "v.nii.gz", "0" * 64, "CC0", "MR T1", "s",
                             slices={"axial": [4]})
    pixels, spacing = pool.read_image(_nifti_gz(volume, np.diag([-1.0, -1.0, 1.0, 1.0])), entry)
    assert pixels.shape == (37, 31, 9) and spacing == (1.0, 1.0, 1.0)
    cut, pixel = pool.take_slice(pixels, spacing, "axial", 4)
    assert cut.shape == (31, 37) and pixel == (1.0, 1.0)
    assert cut[0, 0] == 1.0  # front at the top, the patient's right on the image's left
    _, pixel = pool.take_slice(np.zeros((20, 20, 20)), (2.0, 2.0, 3.0), "coronal", 5)
    with pytest.raises(pool.SourceError, match="not square"):
        pool.check_slice(np.ones((64, 64), np.float32), pixel)
    with pytest.raises(pool.SourceError, match="near-empty"):
        pool.check_slice(np.zeros((70, 65), np.float32), (1.0, 1.0))
    with pytest.raises(pool.SourceError, match="under 64 px"):
        pool.check_slice(np.ones((63, 80), np.float32), (1.0, 1.0))


def test_ct_is_windowed_in_hu_and_the_rest_by_percentiles(pool) -> None:
    hu = np.array([[-2000.0, -1024.0, 1023.5, 3071.0, 4000.0]])
    np.testing.assert_allclose(pool.normalise(hu, "CT"), [[0.0, 0.0, 0.5, 1.0, 1.0]], atol=1e-6)
    mr = np.arange(1000, dtype=np.float32).reshape(25, 40)
    mr[0, 0] = 1e6  # one hot pixel does not squash the rest
    out = pool.normalise(mr, "MR T2")
    assert out.min() == 0.0 and out.max() == 1.0 and 0.45 < out[12, 20] < 0.55


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_build_checks_hashes_writes_16bit_slices_and_skips_finished_work(
    pool, tmp_path: Path, monkeypatch, fake_fetcher
) -> None:
    rng = np.random.default_rng(0)
    volume = np.zeros((67, 71, 65), np.int16)
    volume[5:60, 5:65, 1:] = rng.integers(100, 1000, (55, 60, 64))  # the bottom plane stays empty
    grey = rng.integers(0, 256, (70, 66), dtype=np.uint8)
    files = {"ct.dcm": Path(get_testdata_file("CT_small.dcm")).read_bytes(),
             "head.nii.gz": _nifti_gz(volume, np.eye(4)),
             "slice.png": _png(grey),
             "raw.ima.gz": gzip.compress(rng.integers(0, 4096, (80, 72)).astype(">u2").tobytes())}
    entries = [
        {"name": "ct", "split": "heldout", "source": "pypi:fake==1", "path": "ct.dcm", "modality": "CT"},
        {"name": "head", "split": "train", "source": "debian:fake=2", "path": "head.nii.gz", "modality": "MR T1",
         "slices": {"axial": [0, 5], "sagittal": [30]}},
        {"name": "slice", "split": "train", "source": "pypi:fake==1", "path": "slice.png", "modality": "MR PD"},
        {"name": "raw", "split": "train", "source": "pypi:fake==1", "path": "raw.ima.gz", "modality": "MR T1",
         "raw": [">u2", 80, 72]},
    ]
    for entry in entries:
        entry.update(licence="CC0", subject=entry["name"], sha256=hashlib.sha256(files[entry["path"]]).hexdigest())
    entries[2]["sha256"] = "0" * 64  # a changed source: reported and skipped, the rest is built
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"files": entries}))
    FakeFetcher, fetched = fake_fetcher(files)

    monkeypatch.setattr(pool, "MANIFEST", manifest)
    monkeypatch.setattr(pool, "_Fetcher", FakeFetcher)
    dest = tmp_path / "pool"
    assert pool.main([str(dest), "--sheet", str(tmp_path / "sheet.png")]) == 1  # slice.png and head_ax000 failed
    assert sorted(p.name for p in (dest / "train").iterdir()) == ["head_ax005.png", "head_sag030.png", "raw.png"]
    assert [p.name for p in (dest / "heldout").iterdir()] == ["ct.png"] and (tmp_path / "sheet.png").is_file()
    ct = Image.open(dest / "heldout" / "ct.png")
    assert ct.mode == "I;16" and ct.size == (128, 128)
    assert np.asarray(Image.open(dest / "train" / "head_sag030.png")).shape == (65, 71)  # superior-inferior rows
    record = json.loads((dest / "pool.json").read_text())["slices"]
    assert record["head_ax005"]["plane"] == "axial" and record["head_ax005"]["index"] == 5

    entries[2]["sha256"] = hashlib.sha256(files["slice.png"]).hexdigest()
    entries[1]["slices"] = {"axial": [5], "sagittal": [30]}
    manifest.write_text(json.dumps({"files": entries}))
    fetched.clear()
    assert pool.main([str(dest)]) == 0
    assert fetched == ["pypi:fake==1"] and (dest / "train" / "slice.png").is_file()  # head was complete
    assert pool.main([str(dest)]) == 0 and fetched == ["pypi:fake==1"]  # nothing left to fetch

    entries[0]["split"] = "train"  # a file that changes split moves, and no copy stays behind
    del entries[1]["slices"]["sagittal"]
    manifest.write_text(json.dumps({"files": entries}))
    assert pool.main([str(dest)]) == 0
    assert not list((dest / "heldout").iterdir()) and not (dest / "train" / "head_sag030.png").exists()
    (dest / "train" / "stray.png").write_bytes(files["slice.png"])
    assert pool.main([str(dest)]) == 2  # a folder holding images the script did not write
