"""Bad input never stops a folder or wastes a run, crashes lose no work, untrusted files run no code.

Inputs and outputs go through ``exda restore`` end to end with a tiny checkpointed model; training faults
use the real trainer and checkpoint files; the full disk is a real ``RLIMIT_FSIZE`` limit (writes fail
with EFBIG, the same path as ENOSPC). kill -9 at random moments is benchmarks/robustness.py (subprocesses).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import exda
from exda.cli import main
from exda.data.io import load_image
from exda.engine.checkpoint import latest_valid_checkpoint, load_training_state, save_checkpoint
from exda.engine.config import config_from_dict, load_config
from exda.engine.distributed import DistContext
from exda.engine.trainer import CHECKPOINT_DIR, Trainer, train
from exda.errors import UserError
from exda.inference.checkpoint_format import checkpoint_problem, load_state_into
from exda.inference.loader import load_network

RNG = np.random.default_rng(0)


def _noise(h: int, w: int, c: int = 3) -> np.ndarray:
    return (RNG.random((h, w, c)) * 255).astype(np.uint8)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims ``width`` x ``height`` (a decompression bomb is no bigger on disk)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)))


def _mixed_folder(folder: Path) -> tuple[list[str], list[str]]:
    """Good files of every awkward kind, and bad ones; returns (good names, bad names)."""
    folder.mkdir()
    Image.fromarray(_noise(21, 17)).save(folder / "rgb.png")
    Image.fromarray(_noise(21, 17)).save(folder / "photo.jpg", quality=90)
    Image.fromarray(_noise(9, 11, 4)).save(folder / "alpha.png")
    Image.fromarray(_noise(9, 11)).convert("P").save(folder / "palette.png")
    Image.fromarray(_noise(9, 11)).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray((RNG.random((9, 11)) * 65535).astype(np.uint16)).save(folder / "gray16.png")
    Image.fromarray(_noise(1, 1)).save(folder / "one pixel.png")
    Image.fromarray(_noise(5, 7, 1)[:, :, 0]).save(folder / "gray 7x5.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    Image.fromarray(_noise(8, 14)).save(folder / "rotated.jpg", exif=exif)
    nan = RNG.random((10, 12, 3)).astype(np.float32) * 4
    nan[0, 0, 0], nan[1, 1, 1], nan[2, 2, 2] = np.nan, np.inf, -np.inf
    np.save(folder / "some nan ünïcode.npy", nan)
    good = sorted(p.name for p in folder.iterdir())
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("not an image")
    jpeg = (folder / "photo.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    np.save(folder / "all nan.npy", np.full((6, 6), np.nan, np.float32))
    np.save(folder / "complex.npy", np.zeros((6, 6), np.complex64))
    _png_header_only(folder / "bomb.png", 30000, 30000)
    return good, sorted(set(p.name for p in folder.iterdir()) - set(good))


def test_folder_restores_every_good_file_and_names_each_bad_one(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = _mixed_folder(tmp_path / "in")
    before = _digests(tmp_path / "in")
    rc = main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--checkpoint", str(tiny_checkpoint)])
    out, err = capsys.readouterr()
    assert rc == 1
    summary = f"{len(good)} restored, {len(bad)} failed: {', '.join(bad)} (outputs in {tmp_path / 'out'})"
    assert out.splitlines()[0] == summary
    failures = [line for line in err.splitlines() if "failed:" in line]
    assert [re.match(r".*failed: (.+?): ", line).group(1) for line in failures] == bad
    assert "Traceback" not in err and "--max-pixels" in err
    assert _digests(tmp_path / "in") == before  # inputs untouched
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(Path(name).stem + (".npy" if name.endswith(".npy") else ".png") for name in good)
    assert load_image(tmp_path / "out" / "rotated.png").pixels.shape == (14, 8, 3)  # EXIF applied
    assert load_image(tmp_path / "out" / "one pixel.png").pixels.shape == (1, 1, 3)
    assert load_image(tmp_path / "out" / "gray 7x5.png").pixels.shape == (5, 7, 1)  # gray in, gray out
    assert load_image(tmp_path / "out" / "gray16.png").bit_depth == 16
    assert load_image(tmp_path / "out" / "alpha.png").alpha is not None
    assert np.isfinite(load_image(tmp_path / "out" / "some nan ünïcode.npy").pixels).all()
    assert "holds 3 NaN/Inf values" in err


def test_max_pixels_raises_the_limit_on_purpose(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    src = tmp_path / "wide.png"
    Image.fromarray(_noise(20, 30)).save(src)
    rc = main(["restore", str(src), "--checkpoint", str(tiny_checkpoint), "--max-pixels", "500"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "600 pixels is more than the limit 500" in err[0]
    assert "--max-pixels 600" in err[0]
    assert main(["restore", str(src), "--checkpoint", str(tiny_checkpoint), "--max-pixels", "6e2"]) == 0
    assert main(["restore", str(src), "--checkpoint", str(tiny_checkpoint), "--max-pixels", "lots"]) == 2
    _png_header_only(tmp_path / "bomb.png", 20000, 20000)
    with pytest.raises(UserError, match=r"400,000,000 pixels is more than the limit 178,956,970.*--max-pixels"):
        load_image(tmp_path / "bomb.png")


def test_gray_to_rgb_model_and_rgb_to_gray_model(tmp_path: Path, capsys) -> None:
    torch.manual_seed(0)
    gray_model = exda.create_model("restormer_test", in_channels=1)
    ckpt = save_checkpoint(tmp_path / "gray", "last", model=gray_model, config={}, step=1, metrics={},
                           train_state=None)
    Image.fromarray(_noise(13, 11)).save(tmp_path / "rgb.png")
    assert main(["restore", str(tmp_path / "rgb.png"), "--checkpoint", str(ckpt), "-o", str(tmp_path / "a.png")]) == 0
    assert "restoring its luma" in capsys.readouterr().err
    assert load_image(tmp_path / "a.png").pixels.shape == (13, 11, 1)


def test_outputs_are_checked_before_any_model_runs(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    src = tmp_path / "in.png"
    Image.fromarray(_noise(12, 10)).save(src)
    (tmp_path / "plain_file").write_text("x")
    missing_ckpt = str(tmp_path / "no_such.safetensors")  # the output error must come first
    cases = {
        "out.gif": "cannot write '.gif' files",
        "plain_file/out.png": "is a file, not a folder",
        "in.png": "would overwrite an input image",
    }
    for output, message in cases.items():
        rc = main(["restore", str(src), "-o", str(tmp_path / output), "--checkpoint", missing_ckpt])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and message in err[0], (output, err)
    rc = main(["restore", str(src), "-o", str(tmp_path / "q.jpg"), "--checkpoint", missing_ckpt, "--quality", "0"])
    assert rc == 2 and "--quality must be 1-100" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_is_one_line(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    src = tmp_path / "in.png"
    Image.fromarray(_noise(12, 10)).save(src)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    rc = main(["restore", str(src), "-o", str(locked / "out.png"), "--checkpoint", str(tiny_checkpoint)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "cannot write outputs to" in err[0] and "Permission denied" in err[0]


def test_jpeg_and_webp_outputs_with_quality(tiny_checkpoint: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    Image.fromarray(_noise(16, 20, 4)).save(src)  # alpha: kept by WebP, dropped (with a note) by JPEG
    sizes = {}
    for name, quality in (("low.jpg", 10), ("high.jpg", 95), ("out.webp", 80)):
        assert main(["restore", str(src), "-o", str(tmp_path / name), "--checkpoint", str(tiny_checkpoint),
                     "--quality", str(quality)]) == 0
        loaded = load_image(tmp_path / name)
        assert loaded.pixels.shape == (16, 20, 3) and loaded.bit_depth == 8
        sizes[name] = (tmp_path / name).stat().st_size
    assert sizes["low.jpg"] < sizes["high.jpg"]
    assert load_image(tmp_path / "out.webp").alpha is not None


def test_full_output_location_is_one_line_and_leaves_no_file(tiny_checkpoint: Path, tmp_path: Path, capsys,
                                                             robustness) -> None:
    src = tmp_path / "in.png"
    Image.fromarray(_noise(96, 96)).save(src)  # about 28 KB as PNG
    (tmp_path / "out").mkdir()
    with robustness.file_size_limit(4096):
        rc = main(["restore", str(src), "-o", str(tmp_path / "out" / "r.png"), "--checkpoint", str(tiny_checkpoint)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and re.search(r"cannot write .*r\.png: File too large", err[0])
    assert list((tmp_path / "out").iterdir()) == []  # no partial output, no temp file


# ----- training faults ----------------------------------------------------------------------------
TINY = {
    "model": {"name": "exda_restormer_test"},
    "data": {"degradations": ["noise25"], "patch_size": 16, "batch_size": 2, "num_workers": 0, "length": 4},
    "optim": {"lr": 1e-3, "schedule_iters": 3},  # the same schedule for runs stopped early
    "train": {"iters": 3, "val_every": 0, "ckpt_every": 1, "log_every": 1, "seed": 1, "device": "cpu"},
}


def _config(**train_keys: Any):
    return config_from_dict({**TINY, "train": {**TINY["train"], **train_keys}})


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("reference")
    train(_config(), run)
    return run


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_training_state(run / CHECKPOINT_DIR / "last.safetensors")["model"]


@pytest.mark.parametrize("damage", ["truncate", "flip", "drop_json", "garble_json"])
def test_damaged_last_checkpoint_falls_back_to_previous(
    reference_run: Path, tmp_path: Path, damage: str, capsys
) -> None:
    run = tmp_path / "run"
    train(_config(iters=2), run)
    ckpt = run / CHECKPOINT_DIR
    assert json.loads((ckpt / "previous.json").read_text())["step"] == 1
    weights = ckpt / "last.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:-100])
    elif damage == "flip":
        data = bytearray(weights.read_bytes())
        data[-5] ^= 0xFF  # a weight's bits: safetensors would load it silently
        weights.write_bytes(bytes(data))
    elif damage == "drop_json":
        (ckpt / "last.json").unlink()
    else:
        (ckpt / "last.json").write_text("{not json")
    assert checkpoint_problem(weights) is not None
    assert latest_valid_checkpoint(ckpt)[0] == ckpt / "previous.safetensors"
    if damage in ("truncate", "flip"):  # a cut file is named from its header, before its checksum is read
        with pytest.raises(UserError, match="does not match the SHA-256" if damage == "flip" else "truncated"):
            load_network(weights)
    train(_config(), run, resume=True)  # continues from step 1 to 3
    assert "resuming from previous.safetensors" in capsys.readouterr().err
    expected = _weights(reference_run)
    for name, tensor in _weights(run).items():
        assert torch.equal(tensor, expected[name]), name


def test_stale_temp_files_of_a_killed_save_are_removed_on_resume(reference_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(_config(iters=2), run)
    stale = run / CHECKPOINT_DIR / ".last.safetensors.abc123.tmp"
    stale.write_bytes(b"half a file")
    train(_config(), run, resume=True)
    assert not stale.exists()


def test_full_disk_during_checkpoint_write_keeps_the_previous_one(tmp_path: Path, robustness) -> None:
    config = _config(iters=2)
    trainer = Trainer(config, tmp_path / "run", torch.device("cpu"), DistContext())
    trainer.step = 1
    trainer._save("last", {}, with_state=True)
    ckpt = tmp_path / "run" / CHECKPOINT_DIR
    trainer.step = 2
    message = r"cannot write checkpoint last at step 2 .*File too large.*intact"
    with robustness.file_size_limit(2048), pytest.raises(UserError, match=message):
        trainer._save("last", {}, with_state=True)
    path, problems = latest_valid_checkpoint(ckpt)
    assert path == ckpt / "previous.safetensors" and json.loads((ckpt / "previous.json").read_text())["step"] == 1
    assert problems == ["checkpoint last is incomplete (last.json missing)"]
    assert not list(ckpt.glob(".*.tmp"))


def _nan_batch() -> dict[str, Any]:
    lq = torch.rand(2, 3, 16, 16)
    lq[0, 0, 0, 0] = float("nan")
    return {"lq": lq, "gt": torch.rand(2, 3, 16, 16)}


def test_nonfinite_loss_stops_or_skips_and_never_reaches_a_checkpoint(tmp_path: Path) -> None:
    stop = Trainer(_config(), tmp_path / "stop", torch.device("cpu"), DistContext())
    with pytest.raises(UserError, match="training diverged: loss is nan at step 0.*nonfinite_loss=skip"):
        stop._train_step(_nan_batch())
    skip = Trainer(_config(nonfinite_loss="skip"), tmp_path / "skip", torch.device("cpu"), DistContext())
    before = {k: v.clone() for k, v in skip.model.state_dict().items()}
    assert np.isnan(skip._train_step(_nan_batch())) and skip.skipped_steps == 1
    assert all(torch.equal(v, before[k]) for k, v in skip.model.state_dict().items())  # weights untouched
    assert np.isfinite(skip._train_step({"lq": torch.rand(2, 3, 16, 16), "gt": torch.rand(2, 3, 16, 16)}))
    with torch.no_grad():
        next(skip.model.parameters())[0].fill_(float("inf"))
    with pytest.raises(UserError, match="weights are not finite at step 0 .* not written"):
        skip._save("last", {}, with_state=True)
    assert not (tmp_path / "skip" / CHECKPOINT_DIR / "last.json").exists()


# ----- untrusted files ----------------------------------------------------------------------------
class _RunsCode:
    """Unpickling this would create ``marker``: proof that a loader executed code from a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_untrusted_state_npy_and_yaml_run_no_code(reference_run: Path, tmp_path: Path) -> None:
    marker = tmp_path / "code_ran"
    run = tmp_path / "run"
    train(_config(iters=1), run)
    state = run / CHECKPOINT_DIR / "last.state.pt"
    torch.save({"payload": _RunsCode(marker)}, state)
    record = json.loads((run / CHECKPOINT_DIR / "last.json").read_text())
    record["files"].pop(".state.pt")  # as an attacker would ship it: a record that matches
    (run / CHECKPOINT_DIR / "last.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match="not a readable exda training state"):
        load_training_state(run)
    buffer = io.BytesIO()
    np.save(buffer, np.array([_RunsCode(marker)], dtype=object), allow_pickle=True)
    (tmp_path / "evil.npy").write_bytes(buffer.getvalue())
    with pytest.raises(UserError, match="evil.npy"):
        load_image(tmp_path / "evil.npy")
    (tmp_path / "evil.yaml").write_text(f"model: !!python/object/apply:pathlib.Path.touch ['{marker}']\n")
    with pytest.raises(UserError, match="is not valid YAML"):
        load_config(tmp_path / "evil.yaml")
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load((tmp_path / "evil.yaml").read_text())
    assert not marker.exists()


def test_checkpoint_of_another_size_or_architecture_names_the_mismatched_keys(tiny_checkpoint: Path) -> None:
    weights = load_network(tiny_checkpoint)[0].state_dict()  # restormer_test, dim 16
    cases = {
        "restormer_test": ({"dim": 12}, r"90 of another shape \(decoders\.0\.0\.attn\.project_out\.weight "
                                         r"\(16, 16, 1, 1\) vs \(24, 24, 1, 1\), "),
        "exda_restormer_test": ({}, r"8 missing \(decoders\.0\.0\.attn\.value\.phi\.0\.weight, "),
    }
    for name, (kwargs, message) in cases.items():
        with pytest.raises(UserError, match=message) as caught:
            load_state_into(exda.create_model(name, **kwargs), weights, tiny_checkpoint)
        assert "\n" not in str(caught.value) and name in str(caught.value)
