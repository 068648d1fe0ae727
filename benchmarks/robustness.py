"""Fault injection: bad inputs to ``exda restore``, kill -9 of a training run, damaged checkpoints.

    .venv/bin/python benchmarks/robustness.py            # about 3-5 minutes on 2 CPU cores

1. Bad inputs: each kind is one real file (or argument) given to ``exda restore`` in-process; it must
   either be restored correctly (shape / range checked) or fail with exactly one error line that names
   the file, and never raise. Then every file goes into one folder run through the real CLI (a
   subprocess): the good ones must all be restored, the bad ones listed in the summary, exit status 1,
   and no input changed.
2. Bad checkpoints: each kind of bad checkpoint file (text, HTML, empty, truncated or byte-flipped
   safetensors, a folder, pickles holding code or classes, weights of another architecture, ...) given to
   every command that takes one (restore, eval, export, analyze, demo, convert, train --resume) and to
   ``exda serve``'s loader, in-process: each must exit 2 with exactly one error line naming the file.
3. kill -9: a tiny training run (exda_restormer_test, 16 px patches, a checkpoint every step) is killed
   at random moments (a random delay, or the moment a checkpoint temp file appears, i.e. mid-write) and
   resumed with ``--resume``, again and again; some interruptions also damage the newest checkpoint
   (truncate it, flip a byte). The finished run must equal an uninterrupted one bit for bit, and a
   complete checkpoint must never be lost.
Writes benchmarks/results/robustness.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import exda  # noqa: E402
from exda.cli import main  # noqa: E402
from exda.data.io import load_image, save_image  # noqa: E402
from exda.engine.checkpoint import latest_valid_checkpoint, load_training_state, save_checkpoint  # noqa: E402
from exda.engine.run_lock import LOCK_NAME  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
RNG = np.random.default_rng(0)


# ----- 1. bad inputs ------------------------------------------------------------------------------
@dataclass
class Case:
    """One kind of bad input: ``make(folder)`` writes it and returns the input path; ``expect`` is
    'restored', 'error' or 'either' (a decoder may or may not recover); ``in_folder``: part of the mixed
    folder run; ``args``: extra restore arguments; ``check``: extra test of a restored output."""

    kind: str
    make: Callable[[Path], Path]
    expect: str
    args: list[str] = field(default_factory=list)
    in_folder: bool = True
    check: Callable[[Path], bool] | None = None
    output: str | None = None  # -o name (in the case's own output folder)
    message: str | None = None  # the error line must contain this


def _noise(h: int, w: int, c: int = 3) -> np.ndarray:
    return (RNG.random((h, w, c)) * 255).astype(np.uint8).squeeze()


def _pil(name: str, array: np.ndarray, mode: str | None = None, **save) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        image = Image.fromarray(array)
        if mode is not None:
            image = image.convert(mode)
        image.save(folder / name, **save)
        return folder / name
    return make


def _bytes(name: str, data: bytes | Callable[[], bytes]) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        (folder / name).write_bytes(data() if callable(data) else data)
        return folder / name
    return make


def _npy(name: str, array: np.ndarray, pickle: bool = False) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        with open(folder / name, "wb") as fh:
            np.save(fh, array, allow_pickle=pickle)
        return folder / name
    return make


def _encoded(fmt: str, array: np.ndarray, **save) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format=fmt, **save)
    return out.getvalue()


def _damaged(data: bytes, at: float) -> bytes:
    blob = bytearray(data)
    start = int(len(blob) * at)
    blob[start:start + 16] = bytes(16)
    return bytes(blob)


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)))


CODE_MARKER = Path("/tmp/exda_robustness_code_ran")  # exists only if a pickle's code ever ran


class _RunsCode:
    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {CODE_MARKER}",))


def _exif_rotated(folder: Path) -> Path:
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_noise(8, 14)).save(folder / "exif_rotated.jpg", exif=exif)
    return folder / "exif_rotated.jpg"


def _tiff_float_nan(folder: Path) -> Path:
    import tifffile

    arr = RNG.random((9, 10)).astype(np.float32)
    arr[2, 3] = np.nan
    tifffile.imwrite(folder / "float_nan.tif", arr)
    return folder / "float_nan.tif"


def _truncated_tiff(folder: Path) -> Path:
    import tifffile

    tifffile.imwrite(folder / "full.tmp.tif", _noise(20, 20))
    data = (folder / "full.tmp.tif").read_bytes()
    (folder / "full.tmp.tif").unlink()
    (folder / "truncated_tiff.tif").write_bytes(data[: len(data) // 2])
    return folder / "truncated_tiff.tif"


def _shape(h: int, w: int, c: int | None = None) -> Callable[[Path], bool]:
    def check(out: Path) -> bool:
        loaded = load_image(out)
        ok = loaded.pixels.shape[:2] == (h, w) and np.isfinite(loaded.pixels).all()
        return ok and (c is None or loaded.pixels.shape[2] == c)
    return check


def _cases() -> list[Case]:
    png = _encoded("PNG", _noise(24, 20))
    jpeg = _encoded("JPEG", _noise(24, 20), quality=90)
    nan_some = RNG.random((10, 12, 3)).astype(np.float32) * 5
    nan_some[0, 0, 0], nan_some[1, 1, 1], nan_some[2, 2, 2] = np.nan, np.inf, -np.inf
    return [
        Case("zero-byte PNG", _bytes("zero_bytes.png", b""), "error", message="empty"),
        Case("text file named .jpg", _bytes("text.jpg", b"hello, not an image\n"), "error"),
        Case("HTML page named .png", _bytes("page.png", b"<html><body>404</body></html>"), "error"),
        Case("random bytes .png", _bytes("random_png.png", RNG.bytes(500)), "error"),
        Case("truncated JPEG", _bytes("truncated_jpeg.jpg", jpeg[: len(jpeg) // 2]), "error"),
        Case("truncated PNG", _bytes("truncated_png.png", png[: len(png) // 2]), "error"),
        Case("PNG with damaged pixel data", _bytes("damaged_png.png", _damaged(png, 0.5)), "either"),
        Case("JPEG with damaged scan", _bytes("damaged_jpeg.jpg", _damaged(jpeg, 0.6)), "either"),
        Case("PNG content named .jpg", _bytes("really_png.jpg", png), "restored", check=_shape(24, 20, 3)),
        Case("palette PNG", _pil("palette.png", _noise(13, 11), "P"), "restored", check=_shape(13, 11, 3)),
        Case("palette PNG with transparency",
             _pil("palette_t.png", _noise(13, 11), "P", transparency=0), "restored", check=_shape(13, 11, 3)),
        Case("CMYK JPEG", _pil("cmyk.jpg", _noise(13, 11), "CMYK"), "restored", check=_shape(13, 11, 3)),
        Case("16-bit gray PNG", _pil("gray16.png", (RNG.random((9, 13)) * 65535).astype(np.uint16)), "restored",
             check=lambda out: load_image(out).bit_depth == 16 and _shape(9, 13, 1)(out)),
        Case("16-bit RGB PNG (pypng)", lambda folder: (save_image(folder / "rgb16.png", RNG.random((9, 13, 3)),
             bit_depth=16), folder / "rgb16.png")[1], "restored",
             check=lambda out: load_image(out).bit_depth == 16 and _shape(9, 13, 3)(out)),
        Case("RGBA PNG", _pil("rgba.png", _noise(10, 12, 4)), "restored",
             check=lambda out: load_image(out).alpha is not None and _shape(10, 12, 3)(out)),
        Case("gray + alpha PNG", _pil("gray_alpha.png", _noise(10, 12, 4), "LA"), "restored",
             check=lambda out: load_image(out).alpha is not None and _shape(10, 12, 1)(out)),
        Case("1-bit PNG", _pil("one_bit.png", _noise(10, 12), "1"), "restored", check=_shape(10, 12, 1)),
        Case("EXIF-rotated JPEG", _exif_rotated, "restored", check=_shape(14, 8, 3)),
        Case("gray PNG to an RGB model", _pil("gray.png", _noise(11, 9, 1)), "restored", check=_shape(11, 9, 1)),
        Case("1x1 image", _pil("one_pixel.png", _noise(1, 1, 3).reshape(1, 1, 3)), "restored",
             check=_shape(1, 1, 3)),
        Case("7x5 image", _pil("seven_by_five.png", _noise(5, 7)), "restored", check=_shape(5, 7, 3)),
        Case("decompression bomb (30000x30000 header)", _bytes("bomb.png", _png_header(30000, 30000)), "error",
             message="--max-pixels"),
        Case("image over a lowered --max-pixels", _pil("wide.png", _noise(48, 64)), "error",
             args=["--max-pixels", "1000"], in_folder=False, message="--max-pixels 3072"),
        Case("same image with --max-pixels raised", _pil("wide.png", _noise(48, 64)), "restored",
             args=["--max-pixels", "1000", "--max-pixels", "4e3"], in_folder=False, check=_shape(48, 64, 3)),
        Case(".npy all NaN", _npy("all_nan.npy", np.full((6, 6), np.nan, np.float32)), "error"),
        Case(".npy with NaN and +-Inf", _npy("some_nan.npy", nan_some), "restored", check=_shape(10, 12, 3)),
        Case(".npy complex", _npy("complex.npy", np.zeros((6, 6), np.complex64)), "error"),
        Case(".npy of pickled objects", _npy("pickled.npy", np.array([_RunsCode()], dtype=object), pickle=True),
             "error"),
        Case(".npy 1-D", _npy("one_d.npy", np.zeros(10, np.float32)), "error"),
        Case(".npy 5 channels", _npy("five_channels.npy", np.zeros((6, 6, 5), np.float32)), "error"),
        Case(".npy empty (0 x 5)", _npy("empty.npy", np.zeros((0, 5), np.float32)), "error"),
        Case(".npy float64 in [-1000, 1000]", _npy("wide_range.npy", RNG.uniform(-1e3, 1e3, (9, 8))), "restored",
             check=_shape(9, 8, 1)),
        Case(".npy int16 with negatives", _npy("int16.npy", RNG.integers(-300, 300, (9, 8), dtype=np.int16)),
             "restored", check=_shape(9, 8, 1)),
        Case(".npy not an array", _bytes("not_array.npy", b"\x93NUMPY garbage"), "error"),
        Case("float TIFF with NaN", _tiff_float_nan, "restored", check=_shape(9, 10, 1)),
        Case("truncated TIFF", _truncated_tiff, "error"),
        Case("random bytes .dcm", _bytes("random_dcm.dcm", RNG.bytes(300)), "error"),
        Case("random bytes .nii", _bytes("random_nii.nii", RNG.bytes(300)), "error"),
        Case("WebP input", _bytes("photo_webp.webp", _encoded("WEBP", _noise(12, 10), quality=80)), "restored",
             check=_shape(12, 10, 3)),
        Case("BMP input", _pil("photo_bmp.bmp", _noise(12, 10)), "restored", check=_shape(12, 10, 3)),
        Case("name with spaces and unicode", _pil("fötö ñame 写真 .png", _noise(12, 10)), "restored",
             check=_shape(12, 10, 3)),
        Case("missing input file", lambda folder: folder / "does_not_exist.png", "error", in_folder=False),
        Case("output type .gif", _pil("to_gif.png", _noise(8, 8)), "error", output="out.gif", in_folder=False,
             message="cannot write '.gif'"),
        Case("output under a plain file", _pil("under_file.png", _noise(8, 8)), "error",
             output="plain_file/out.png", in_folder=False, message="is a file, not a folder"),
        Case("output = the input", _pil("same.png", _noise(8, 8)), "error", output="@input", in_folder=False,
             message="would overwrite an input"),
        Case("JPEG output of an RGBA input", _pil("rgba_to_jpg.png", _noise(10, 12, 4)), "restored",
             output="out.jpg", args=["--quality", "80"], in_folder=False, check=_shape(10, 12, 3)),
        Case("--quality out of range", _pil("quality.png", _noise(8, 8)), "error", output="out.jpg",
             args=["--quality", "101"], in_folder=False, message="--quality"),
        Case("full output location (file size limit)", _pil("full.png", _noise(96, 96)), "error",
             output="out.png", args=["@fsize"], in_folder=False, message="File too large"),
        Case("checkpoint whose weights do not fit its architecture", _pil("ckpt_a.png", _noise(8, 8)), "error",
             args=["@ckpt:mismatch"], in_folder=False, message="missing"),
        Case("checkpoint with a flipped byte", _pil("ckpt_b.png", _noise(8, 8)), "error",
             args=["@ckpt:flipped"], in_folder=False, message="SHA-256"),
        Case("checkpoint that is a pickle", _pil("ckpt_c.png", _noise(8, 8)), "error",
             args=["@ckpt:pickle"], in_folder=False, message="never run"),
        Case(".pth checkpoint holding a pickled object (code)", _pil("ckpt_d.png", _noise(8, 8)), "error",
             args=["@ckpt:pth"], in_folder=False, message="weights_only"),
    ]


def _special_checkpoints(folder: Path, good: Path) -> dict[str, Path]:
    """A checkpoint whose metadata names another architecture, one with a damaged weight, a pickle."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(good), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        metadata = {**f.metadata(), "model_name": "exda_restormer_test"}
    save_file(tensors, str(folder / "mismatch.safetensors"), metadata=metadata)
    flipped = folder / "flipped"
    flipped.mkdir()
    shutil.copy(good, flipped / "last.safetensors")
    shutil.copy(good.with_suffix(".json"), flipped / "last.json")
    blob = bytearray((flipped / "last.safetensors").read_bytes())
    blob[-7] ^= 0x40
    (flipped / "last.safetensors").write_bytes(bytes(blob))
    torch.save({"payload": _RunsCode()}, folder / "pickle.safetensors")
    torch.save({"params": _RunsCode()}, folder / "published.pth")
    return {"mismatch": folder / "mismatch.safetensors", "flipped": flipped / "last.safetensors",
            "pickle": folder / "pickle.safetensors", "pth": folder / "published.pth"}


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """A real write limit: files may not grow past ``limit`` bytes (EFBIG, like a full disk)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def run_input_cases(work: Path, checkpoint: Path) -> dict:
    """Each case alone, in-process; returns per-case rows and the totals."""
    specials = _special_checkpoints(work, checkpoint)
    rows = []
    for i, case in enumerate(_cases()):
        folder = work / f"case{i:02d}"
        folder.mkdir()
        (folder / "plain_file").write_text("x")
        src = case.make(folder)
        out_dir = folder / "out"
        args, limit, ckpt = [], None, checkpoint
        for arg in case.args:
            if arg == "@fsize":
                limit = 4096
            elif arg.startswith("@ckpt:"):
                ckpt = specials[arg.removeprefix("@ckpt:")]
            else:
                args.append(arg)
        output = src if case.output == "@input" else folder / case.output if case.output else out_dir / "out.png"
        if case.output is None and src.suffix == ".npy":
            output = out_dir / "out.npy"
        argv = ["restore", str(src), "-o", str(output), "--checkpoint", str(ckpt), *args]
        stdout, stderr = io.StringIO(), io.StringIO()
        raised = None
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                with file_size_limit(limit) if limit else contextlib.nullcontext():
                    rc = main(argv)
            except BaseException as err:  # noqa: BLE001 - counting escapes is the point
                rc, raised = -1, f"{type(err).__name__}: {err}"
        errors = [line for line in stderr.getvalue().splitlines() if ": error: " in line]
        restored = rc == 0 and output.is_file()
        if restored:
            outcome = "restored"
            correct = case.check(output) if case.check else True
        else:
            outcome = "error"
            names = (src.name, ckpt.name, output.name, output.parent.name)
            names_it = any(name in errors[0] for name in names) if errors else False
            correct = (rc == 2 and len(errors) == 1 and (names_it or case.kind.startswith("--"))
                       and (case.message is None or case.message in errors[0]))
        ok = raised is None and "Traceback" not in stderr.getvalue() and correct and (
            case.expect in ("either", outcome))
        rows.append({"kind": case.kind, "expected": case.expect, "outcome": outcome, "exit": rc, "ok": bool(ok),
                     "traceback": raised is not None or "Traceback" in stderr.getvalue(),
                     "line": errors[0] if errors else ""})
    return {"rows": rows, "kinds": len(rows), "ok": sum(r["ok"] for r in rows),
            "tracebacks": sum(r["traceback"] for r in rows),
            "code_executed": CODE_MARKER.exists()}


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


def run_mixed_folder(work: Path, checkpoint: Path, env: dict[str, str]) -> dict:
    """Every folder case in one folder, through the real CLI in a subprocess."""
    folder = work / "mixed"
    folder.mkdir()
    expectations = {}
    for case in _cases():
        if case.in_folder:
            expectations[case.make(folder).name] = case.expect
    before = _digests(folder)
    out = work / "mixed_restored"
    proc = subprocess.run([sys.executable, "-m", "exda", "restore", str(folder), "-o", str(out), "--checkpoint",
                           str(checkpoint)], capture_output=True, text=True, env=env, cwd=ROOT)
    summary = proc.stdout.splitlines()[0] if proc.stdout else ""
    listed = summary.split(" failed: ", 1)[1].split(" (outputs in")[0] if " failed: " in summary else ""
    failed = set(listed.split(", ")) if listed else set()
    restored = {p.stem for p in out.iterdir()} if out.is_dir() else set()
    good = [name for name, expect in expectations.items() if expect == "restored"]
    bad = [name for name, expect in expectations.items() if expect == "error"]
    either = [name for name, expect in expectations.items() if expect == "either"]
    return {
        "files": len(expectations), "exit": proc.returncode, "summary": summary,
        "good_outputs_lost": sum(Path(name).stem not in restored for name in good),
        "bad_files_not_reported": sum(name not in failed for name in bad),
        "either_files": {name: "restored" if Path(name).stem in restored else "failed" for name in either},
        "inputs_overwritten": sum(_digests(folder).get(k) != v for k, v in before.items()),
        "tracebacks": proc.stderr.count("Traceback"),
    }


# ----- 2. bad checkpoints through every command ---------------------------------------------------
CHECKPOINT_COMMANDS = ("restore", "eval", "export", "analyze", "demo", "convert", "train --resume", "serve (page)")
CKPT_TRAIN_CONFIG = {"model": {"name": "exda_restormer_test"},
                     "data": {"degradations": ["noise25"], "patch_size": 16, "batch_size": 2, "num_workers": 0,
                              "length": 4, "val_max_items": 0},
                     "train": {"iters": 2, "val_every": 0, "ckpt_every": 1, "device": "cpu"}}


def _flip(data: bytes, at: int) -> bytes:
    blob = bytearray(data)
    blob[at] ^= 0x40
    return bytes(blob)


RESUME_ONLY = "exda checkpoint of another architecture than the config (resume only)"  # valid elsewhere


def bad_checkpoints(folder: Path) -> dict[str, Path]:
    """One file (or folder) per kind of bad checkpoint; the safetensors ones start from a real checkpoint."""
    import zipfile

    torch.manual_seed(0)
    good = save_checkpoint(folder / "good", "last", model=exda.create_model("exda_restormer_test"), config={},
                           step=1, metrics={}, train_state=None)
    weights = good.read_bytes()
    torch.save({"params": {"w": torch.zeros(64, 64)}}, folder / "whole.pth")
    pth = (folder / "whole.pth").read_bytes()
    other = folder / "other"
    other.mkdir()
    torch.manual_seed(0)
    other_arch = save_checkpoint(other, "last", model=exda.create_model("restormer_test"), config={}, step=1,
                                 metrics={}, train_state={"epoch": 0})

    def write(name: str, data: bytes | str) -> Path:
        path = folder / name
        path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
        return path

    def saved(name: str, obj: object) -> Path:
        torch.save(obj, folder / name)
        return folder / name

    def zipped(name: str) -> Path:
        with zipfile.ZipFile(folder / name, "w") as archive:
            archive.writestr("weights/README.txt", "the weights are elsewhere")
        return folder / name

    flipped = folder / "flipped_run"
    flipped.mkdir()
    shutil.copy(good.with_suffix(".json"), flipped / "last.json")
    (flipped / "last.safetensors").write_bytes(_flip(weights, -7))
    (folder / "empty_run").mkdir()
    return {
        "text file": write("notes.pth", "hello, these are not weights\n"),
        "HTML page (a failed download)": write("download.pth",
                                               "<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n"),
        "empty file": write("empty.safetensors", b""),
        "random bytes": write("random.pth", RNG.bytes(777)),
        "Git LFS pointer": write("lfs.safetensors", "version https://git-lfs.github.com/spec/v1\n"
                                 "oid sha256:0123\nsize 4603700\n"),
        "exda checkpoint's JSON record": write("record.json", good.with_suffix(".json").read_text()),
        "PNG image": write("image.pth", _encoded("PNG", _noise(8, 8))),
        "truncated safetensors": write("cut.safetensors", weights[: len(weights) // 2]),
        "safetensors cut inside its header": write("cut_header.safetensors", weights[:100]),
        "safetensors, flipped header-length byte": write("flip_len.safetensors", _flip(weights, 1)),
        "safetensors, flipped high header-length byte": write("flip_len_high.safetensors", _flip(weights, 7)),
        "safetensors, flipped byte in its format": write("flip_fmt.safetensors",
                                                         _flip(weights, weights.index(b"checkpoint"))),
        "exda checkpoint, flipped weight byte (record's SHA-256)": flipped / "last.safetensors",
        "truncated .pth (zip)": write("cut.pth", pth[:300]),
        "damaged legacy pickle": write("legacy.pth", b"\x80\x02" + RNG.bytes(60)),
        "zip archive without a checkpoint": zipped("archive.pth"),
        "pickle holding code": saved("code.pth", {"params": _RunsCode()}),
        "pickle holding code, named .safetensors": saved("code.safetensors", {"params": _RunsCode()}),
        "pickle holding a class (whole nn.Module)": saved("module.pth", torch.nn.Conv2d(3, 3, 3)),
        "weights of an architecture exda lacks": saved("resnet.pth", {"conv1.weight": torch.zeros(8, 3, 3, 3),
                                                                      "fc.weight": torch.zeros(10, 8)}),
        RESUME_ONLY: other_arch,
        "folder without a checkpoint": folder / "empty_run",
    }


def checkpoint_argv(command: str, bad: Path, work: Path, config: Path, image: Path) -> list[str] | None:
    """The command line giving ``bad`` as the checkpoint (None: the kind does not apply to the command);
    ``train --resume`` gets it as its run's last checkpoint, with a record that matches it."""
    from exda.inference.checkpoint_format import FORMAT, file_digest

    if command == "train --resume":
        ckpt = work / "run" / "checkpoints"
        ckpt.mkdir(parents=True)
        dst = ckpt / "last.safetensors"
        if bad.is_dir():
            shutil.copytree(bad, dst)
        else:
            shutil.copy(bad, dst)
            stem = bad.name.removesuffix(".safetensors")
            for suffix in (".state.pt", ".json"):  # a checkpoint's own files, when it has them
                if bad.suffix == ".safetensors" and (own := bad.with_name(stem + suffix)).is_file():
                    shutil.copy(own, ckpt / f"last{suffix}")
            if not (ckpt / "last.json").is_file():  # a record that matches, so the file itself gets read
                record = {"format": FORMAT, "step": 1, "files": {".safetensors": file_digest(dst)}}
                (ckpt / "last.json").write_text(json.dumps(record))
        return ["train", "--config", str(config), "--out", str(work / "run"), "--resume"]
    if bad.parent.name == "other":
        return None  # a valid checkpoint: every other command restores with it
    return {
        "restore": ["restore", str(image), "-o", str(work / "out.png"), "--checkpoint", str(bad)],
        "eval": ["eval", "--checkpoint", str(bad), "--max-items", "1", "--out", str(work / "eval")],
        "export": ["export", str(work / "model.onnx"), "--checkpoint", str(bad)],
        "analyze": ["analyze", "spectra", "--checkpoint", str(bad), "--out", str(work / "analysis")],
        "demo": ["demo", "--checkpoint", str(bad), "--out", str(work / "demo")],
        "convert": ["convert", str(bad), str(work / "converted.safetensors")],
    }[command]


def _serve_line(bad: Path, image: Path) -> tuple[int, str, str | None]:
    """``exda serve``'s loader on ``bad`` as its ``--checkpoint``: (2 and the message, or 0), no CLI involved."""
    from exda.errors import UserError
    from exda.inference.serve import Models

    try:
        Models(bad, None, "fp32", torch.device("cpu"))
    except UserError as err:
        return 2, f"exda serve: error: {err}", None
    except Exception as err:  # noqa: BLE001 - counting escapes is the point
        return -1, "", f"{type(err).__name__}: {err}"
    return 0, "", None


def run_checkpoint_cases(work: Path) -> dict:
    """Every bad checkpoint kind through every command, in-process."""
    kinds = bad_checkpoints(work / "files")
    config = work / "train.yaml"
    config.write_text(json.dumps(CKPT_TRAIN_CONFIG))
    image = work / "in.png"
    Image.fromarray(_noise(13, 11)).save(image)
    rows = []
    for k, (kind, bad) in enumerate(kinds.items()):
        outcomes = {}
        for c, command in enumerate(CHECKPOINT_COMMANDS):
            case = work / f"k{k:02d}c{c}"
            case.mkdir()
            if command == "serve (page)":
                if bad.parent.name == "other":
                    continue
                rc, stderr, raised = _serve_line(bad, image)
            else:
                argv = checkpoint_argv(command, bad, case, config, image)
                if argv is None:
                    continue
                out, err = io.StringIO(), io.StringIO()
                raised = None
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    try:
                        rc = main(argv)
                    except BaseException as exc:  # noqa: BLE001 - counting escapes is the point
                        rc, raised = -1, f"{type(exc).__name__}: {exc}"
                stderr = err.getvalue()
            lines = [line for line in stderr.splitlines() if line.strip()]
            names_it = bool(lines) and (bad.name in lines[0] or command == "train --resume")
            written = [p for p in case.rglob("*") if p.is_file() and "checkpoints" not in p.relative_to(case).parts
                       and p.name != LOCK_NAME]  # train's run lock is the run folder's own
            ok = raised is None and rc == 2 and len(lines) == 1 and ": error: " in lines[0] and names_it \
                and not written
            outcomes[command] = {"exit": rc, "ok": ok, "traceback": raised is not None or "Traceback" in stderr,
                                 "line": lines[0] if lines else (raised or "")}
        rows.append({"kind": kind, "commands": outcomes})
    tried = [o for row in rows for o in row["commands"].values()]
    return {"kinds": len(rows), "commands": list(CHECKPOINT_COMMANDS), "pairs": len(tried),
            "ok": sum(o["ok"] for o in tried), "tracebacks": sum(o["traceback"] for o in tried),
            "code_executed": CODE_MARKER.exists(), "rows": rows}


# ----- 3. kill -9 and damaged checkpoints ---------------------------------------------------------
TRAIN_CONFIG = """model:
  name: exda_restormer_test
data:
  degradations: [noise25]
  patch_size: 16
  batch_size: 2
  num_workers: 0
  length: 8
  val_max_items: 0
optim:
  lr: 1.0e-3
  warmup_iters: 2
  schedule_iters: {iters}
train:
  iters: {iters}
  val_every: 0
  ckpt_every: 1
  log_every: 5
  ema_decay: 0.9
  seed: 5
  device: cpu
"""


def _train_cmd(config: Path, run: Path, resume: bool) -> list[str]:
    return [sys.executable, "-m", "exda", "train", "--config", str(config), "--out", str(run),
            *(["--resume"] if resume else [])]


def _valid_step(run: Path) -> int:
    path, _ = latest_valid_checkpoint(run / "checkpoints")
    return -1 if path is None else json.loads(path.with_suffix(".json").read_text())["step"]


def _kill_during_write(proc: subprocess.Popen, ckpt_dir: Path, writes: int, timeout: float) -> str:
    """SIGKILL the moment the ``writes``-th checkpoint temp file is seen (a save in progress)."""
    seen, was_present, end = 0, False, time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        present = ckpt_dir.is_dir() and any(p.name.endswith(".tmp") for p in os.scandir(ckpt_dir))
        if present and not was_present:
            seen += 1
            if seen >= writes:
                proc.send_signal(signal.SIGKILL)
                return "during checkpoint write"
        was_present = present
        time.sleep(0.0005)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        return "random time (no write seen)"
    return "finished first"


def _damage(run: Path, rng: random.Random) -> str:
    ckpt = run / "checkpoints"
    weights = ckpt / "last.safetensors"
    if not (ckpt / "last.json").is_file() or not weights.is_file():
        return ""
    how = rng.choice(["truncate weights", "flip a weight byte", "truncate state"])
    if how == "truncate weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif how == "flip a weight byte":
        blob = bytearray(weights.read_bytes())
        blob[rng.randrange(len(blob) // 2, len(blob))] ^= 0x10
        weights.write_bytes(bytes(blob))
    else:
        state = ckpt / "last.state.pt"
        state.write_bytes(state.read_bytes()[:-50])
    return how


def run_kill_cycles(work: Path, kills: int, damages: int, iters: int, env: dict[str, str], seed: int) -> dict:
    rng = random.Random(seed)
    config = work / "train.yaml"
    config.write_text(TRAIN_CONFIG.format(iters=iters))
    config_digest = hashlib.sha256(config.read_bytes()).hexdigest()
    reference = work / "reference"
    start = time.monotonic()
    subprocess.run(_train_cmd(config, reference, False), check=True, capture_output=True, env=env, cwd=ROOT)
    reference_s = time.monotonic() - start
    run = work / "interrupted"
    events, resumes, resumes_ok, detected, lost = [], 0, 0, 0, 0
    damage_at = set(rng.sample(range(kills), damages))
    for attempt in range(kills + damages + 50):
        before = _valid_step(run)
        resume = before >= 0
        proc = subprocess.Popen(_train_cmd(config, run, resume), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, env=env, cwd=ROOT)
        injected = len([e for e in events if e["killed"]])
        if injected < kills:
            if rng.random() < 0.5:
                how = _kill_during_write(proc, run / "checkpoints", rng.randint(1, 12), timeout=60)
            else:
                time.sleep(rng.uniform(2.0, 9.0))  # the start (imports) takes several seconds
                how = "random time" if proc.poll() is None else "finished first"
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
        else:
            how = "ran to the end"
        _, err = proc.communicate()
        after = _valid_step(run)
        killed = proc.returncode == -signal.SIGKILL
        fell_back = len(re.findall(r"^warning: checkpoint last is (?:corrupt|incomplete)", err, re.M))
        if resume:  # a resume fails when it exits with an error; killed or finished counts as success
            resumes += 1
            resumes_ok += int(killed or proc.returncode == 0)
        detected += fell_back
        lost += int(after < before)  # a complete checkpoint that vanished with nothing newer
        damaged = _damage(run, rng) if killed and injected in damage_at else ""
        # Detected: the checkpoint that resume would now pick is not the damaged last.
        damage_detected = bool(damaged) and latest_valid_checkpoint(run / "checkpoints")[0] != \
            run / "checkpoints" / "last.safetensors"
        # A crash inside a save leaves one complete checkpoint for a moment; damaging that one too is two
        # faults at once, and the run then starts again from step 0. Counted, not hidden.
        after_damage = _valid_step(run) if damaged else after
        events.append({"attempt": attempt, "resumed_from_step": before if resume else None, "kill": how,
                       "killed": killed, "exit": proc.returncode, "valid_step_after": after,
                       "fell_back_to_previous": fell_back, "damaged_after": damaged,
                       "damage_detected": damage_detected, "valid_step_after_damage": after_damage})
        if proc.returncode == 0 and after == iters:
            break
        if not killed:  # an error, not our kill: stop and report it
            events[-1]["stderr_tail"] = err[-500:]
            break
    finished = _valid_step(run) == iters
    equal = False
    if finished:
        a = load_training_state(reference / "checkpoints" / "last.safetensors")
        b = load_training_state(run / "checkpoints" / "last.safetensors")
        equal = all(torch.equal(a[g][k], b[g][k]) for g in ("model", "ema") for k in a[g]) and \
            a["train_state"]["epoch"] == b["train_state"]["epoch"]
    return {
        "iters": iters, "reference_seconds": round(reference_s, 1), "kills": sum(e["killed"] for e in events),
        "kills_during_checkpoint_write": sum(e["killed"] and e["kill"] == "during checkpoint write" for e in events),
        "damaged_checkpoints": sum(bool(e["damaged_after"]) for e in events),
        "damaged_checkpoints_detected": sum(e["damage_detected"] for e in events),
        "resumes": resumes, "resumes_succeeded": resumes_ok,
        "checkpoints_found_damaged_or_incomplete_and_skipped": detected,
        "complete_checkpoints_lost": lost,
        "restarts_from_step_0_after_damage": sum(bool(e["damaged_after"]) and e["valid_step_after_damage"] < 0
                                                 and e["valid_step_after"] >= 0 for e in events),
        "finished": finished, "equal_to_uninterrupted": equal,
        "config_overwritten": hashlib.sha256(config.read_bytes()).hexdigest() != config_digest,
        "events": events,
    }


def _markdown(result: dict) -> str:
    inputs, mixed, kills, ckpts = result["inputs"], result["mixed_folder"], result["kill"], result["checkpoints"]
    lines = [
        "# Robustness (fault injection)", "",
        f"`{result['command']}` on {result['machine']}, {result['date']}.", "",
        "| measure | result | goal |", "|---|---|---|",
        f"| kinds of bad input tried (each alone through `exda restore`) | {inputs['kinds']} | >= 30 |",
        f"| handled as expected (correct result, or one error line naming the file) | {inputs['ok']} / "
        f"{inputs['kinds']} | all |",
        f"| tracebacks | {inputs['tracebacks'] + mixed['tracebacks']} | 0 |",
        f"| code executed from an untrusted file | {int(inputs['code_executed'])} | 0 |",
        f"| mixed folder: files / exit status | {mixed['files']} / {mixed['exit']} | exit 1 |",
        f"| mixed folder: good outputs lost | {mixed['good_outputs_lost']} | 0 |",
        f"| mixed folder: bad files not named in the summary | {mixed['bad_files_not_reported']} | 0 |",
        f"| inputs overwritten | {mixed['inputs_overwritten']} | 0 |",
        f"| kill -9 injected into training (of which during a checkpoint write) | {kills['kills']} "
        f"({kills['kills_during_checkpoint_write']}) | >= 20 |",
        f"| checkpoints damaged on purpose (truncated / flipped byte) and detected by their SHA-256 | "
        f"{kills['damaged_checkpoints_detected']} / {kills['damaged_checkpoints']} | all |",
        f"| resumes that succeeded | {kills['resumes_succeeded']} / {kills['resumes']} | 100% |",
        f"| resumes that skipped a damaged or incomplete last (warning line) | "
        f"{kills['checkpoints_found_damaged_or_incomplete_and_skipped']} | - |",
        f"| complete checkpoints lost to a kill | {kills['complete_checkpoints_lost']} | 0 |",
        f"| damage that hit the only complete checkpoint (kill mid-save + damage: the run restarted at step 0) | "
        f"{kills['restarts_from_step_0_after_damage']} | - |",
        f"| final weights equal to an uninterrupted run (bit for bit) | {kills['equal_to_uninterrupted']} | True |",
        f"| bad checkpoint kinds x commands that take a checkpoint (incl. serve's loader) | "
        f"{ckpts['kinds']} x {len(ckpts['commands'])} ({ckpts['pairs']} pairs) | - |",
        f"| pairs answered with one error line naming the file, exit 2, nothing written | {ckpts['ok']} / "
        f"{ckpts['pairs']} | all |",
        f"| tracebacks (bad checkpoints) | {ckpts['tracebacks']} | 0 |",
        f"| code executed from a checkpoint | {int(ckpts['code_executed'])} | 0 |",
        "", f"Mixed folder summary: `{mixed['summary']}`", "",
        "| bad input | expected | outcome | exit | ok | error line |", "|---|---|---|---|---|---|",
    ]
    for row in inputs["rows"]:
        line = row["line"].replace("|", "\\|")
        line = re.sub(r"/tmp/[^ :]*/", "…/", line)
        lines.append(f"| {row['kind']} | {row['expected']} | {row['outcome']} | {row['exit']} | "
                     f"{'yes' if row['ok'] else 'NO'} | {line} |")
    commands = ckpts["commands"]
    lines += ["", "Bad checkpoints: exit status per command (ok = one error line naming the file, nothing written; "
              "- = not applicable: a valid checkpoint every other command restores with), and the line "
              "`exda restore` (or `train --resume`) printed.", "",
              "| bad checkpoint | " + " | ".join(commands) + " | error line |",
              "|---|" + "---|" * (len(commands) + 1)]
    for row in ckpts["rows"]:
        cells = [f"{o['exit']} {'ok' if o['ok'] else 'NO'}" if (o := row["commands"].get(c)) else "-" for c in commands]
        first = row["commands"].get("restore") or row["commands"]["train --resume"]
        line = re.sub(r"/tmp/[^ :]*/", "…/", first["line"]).replace("|", "\\|")
        lines.append(f"| {row['kind']} | " + " | ".join(cells) + f" | {line} |")
    return "\n".join(lines) + "\n"


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=24)
    parser.add_argument("--damages", type=int, default=6, help="kills after which the newest checkpoint is damaged")
    parser.add_argument("--iters", type=int, default=800)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "robustness.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    CODE_MARKER.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="exda_robustness_") as tmp:
        work = Path(tmp)
        torch.manual_seed(0)
        checkpoint = save_checkpoint(work / "ckpt", "last", model=exda.create_model("restormer_test"), config={},
                                     step=1, metrics={}, train_state=None)
        (work / "inputs").mkdir()
        (work / "train").mkdir()
        start = time.monotonic()
        inputs = run_input_cases(work / "inputs", checkpoint)
        mixed = run_mixed_folder(work, checkpoint, env)
        inputs_s = time.monotonic() - start
        (work / "checkpoints").mkdir()
        start = time.monotonic()
        checkpoints = run_checkpoint_cases(work / "checkpoints")
        checkpoints_s = time.monotonic() - start
        kill = run_kill_cycles(work / "train", args.kills, args.damages, args.iters, env, args.seed)
    result = {
        "command": " ".join(["python benchmarks/robustness.py", *sys.argv[1:]]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "inputs_seconds": round(inputs_s, 1), "inputs": inputs, "mixed_folder": mixed,
        "checkpoints_seconds": round(checkpoints_s, 1), "checkpoints": checkpoints, "kill": kill,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(_markdown(result))
    print(_markdown(result))


if __name__ == "__main__":
    main_cli()
