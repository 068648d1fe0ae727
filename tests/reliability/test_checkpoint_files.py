"""Bad checkpoint files: every command that takes a checkpoint answers each with one line and exit 2.

Text, HTML, empty, truncated or byte-flipped safetensors, a folder, pickles holding classes or code
(never run), random bytes, a Git LFS pointer, and valid weights of an architecture exda does not have,
each given to ``restore``, ``eval``, ``export``, ``analyze``, ``demo``, ``convert``, ``train --resume``
and to ``exda serve``'s loader (:class:`exda.inference.serve.Models`, which loads through the same
:class:`exda.inference.restorer.Restorer`).
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import exda
from exda.cli import main
from exda.engine.checkpoint import save_checkpoint
from exda.engine.run_lock import LOCK_NAME
from exda.errors import UserError
from exda.file_kind import sniff
from exda.inference.checkpoint_format import FORMAT, file_digest
from exda.inference.loader import load_network

CODE_MARKER = Path("/tmp/exda_test_checkpoint_code_ran")


class _RunsCode:
    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {CODE_MARKER}",))


def _flip(data: bytes, at: int) -> bytes:
    blob = bytearray(data)
    blob[at] ^= 0x40
    return bytes(blob)


def _zip_without_pickle(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("weights/README.txt", "the weights are elsewhere")


def _make(kind: str, folder: Path, good: Path) -> Path:
    """One bad checkpoint of ``kind`` in ``folder``."""
    weights = good.read_bytes()
    torch.manual_seed(0)
    makers = {
        "text": ("notes.pth", lambda p: p.write_text("hello, these are not weights\n")),
        "html": ("download.pth", lambda p: p.write_text("<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n")),
        "empty": ("empty.safetensors", lambda p: p.write_bytes(b"")),
        "random bytes": ("random.pth", lambda p: p.write_bytes(np.random.default_rng(0).bytes(777))),
        "git lfs pointer": ("lfs.safetensors", lambda p: p.write_text(
            "version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 4603700\n")),
        "truncated safetensors": ("cut.safetensors", lambda p: p.write_bytes(weights[: len(weights) // 2])),
        "safetensors, flipped length byte": ("flip_len.safetensors", lambda p: p.write_bytes(_flip(weights, 1))),
        "safetensors, flipped format byte": ("flip_fmt.safetensors",
                                             lambda p: p.write_bytes(_flip(weights, weights.index(b"checkpoint")))),
        "truncated .pth": ("cut.pth", lambda p: p.write_bytes(_torch_bytes(folder)[:300])),
        "zip that is not a .pth": ("archive.pth", _zip_without_pickle),
        "pickle holding code": ("code.pth", lambda p: torch.save({"params": _RunsCode()}, p)),
        "pickle holding code, named .safetensors": ("code.safetensors",
                                                    lambda p: torch.save({"params": _RunsCode()}, p)),
        "pickle holding a class": ("module.pth", lambda p: torch.save(nn.Conv2d(3, 3, 3), p)),
        "weights of another architecture": ("resnet.pth", lambda p: torch.save(
            {"conv1.weight": torch.zeros(8, 3, 3, 3), "fc.weight": torch.zeros(10, 8)}, p)),
        "folder without a checkpoint": ("empty_run", lambda p: p.mkdir()),
    }
    name, make = makers[kind]
    path = folder / name
    make(path)
    return path


def _torch_bytes(folder: Path) -> bytes:
    path = folder / ".whole.pth"
    torch.save({"params": {"w": torch.zeros(64, 64)}}, path)
    return path.read_bytes()


KINDS = ["text", "html", "empty", "random bytes", "git lfs pointer", "truncated safetensors",
         "safetensors, flipped length byte", "safetensors, flipped format byte", "truncated .pth",
         "zip that is not a .pth", "pickle holding code", "pickle holding code, named .safetensors",
         "pickle holding a class",
         "weights of another architecture", "folder without a checkpoint"]
COMMANDS = ["restore", "eval", "export", "analyze", "demo", "convert", "train --resume"]
TRAIN_CONFIG = {"model": {"name": "exda_restormer_test"},
                "data": {"degradations": ["noise25"], "patch_size": 16, "batch_size": 2, "num_workers": 0,
                         "length": 4, "val_max_items": 0},
                "train": {"iters": 2, "val_every": 0, "ckpt_every": 1, "device": "cpu"}}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad_checkpoints")
    torch.manual_seed(0)
    good = save_checkpoint(folder / "good", "last", model=exda.create_model("exda_restormer_test"), config={},
                           step=1, metrics={}, train_state=None)
    made = {kind: _make(kind, folder, good) for kind in KINDS}
    flipped = folder / "flipped_run"
    flipped.mkdir()
    shutil.copy(good, flipped / "last.safetensors")
    shutil.copy(good.with_suffix(".json"), flipped / "last.json")
    (flipped / "last.safetensors").write_bytes(_flip((flipped / "last.safetensors").read_bytes(), -7))
    made["exda checkpoint, flipped weight byte (SHA-256)"] = flipped / "last.safetensors"
    Image.fromarray((np.random.default_rng(0).random((13, 11, 3)) * 255).astype(np.uint8)).save(folder / "in.png")
    (folder / "train.yaml").write_text(json.dumps(TRAIN_CONFIG))
    return made


def _argv(command: str, bad: Path, work: Path) -> list[str]:
    """The command line giving ``bad`` as the checkpoint; train --resume gets it as a run's last checkpoint."""
    root = bad.parent if bad.name != "last.safetensors" else bad.parent.parent
    if command == "train --resume":
        ckpt = work / "run" / "checkpoints"
        ckpt.mkdir(parents=True)
        dst = ckpt / "last.safetensors"
        shutil.copytree(bad, dst) if bad.is_dir() else shutil.copy(bad, dst)
        if bad.name == "last.safetensors":  # a checkpoint with its own record
            shutil.copy(bad.with_suffix(".json"), ckpt / "last.json")
        elif dst.is_file():  # a record that matches it, so the file itself is what gets read
            record = {"format": FORMAT, "step": 1, "files": {".safetensors": file_digest(dst)}}
            (ckpt / "last.json").write_text(json.dumps(record))
        return ["train", "--config", str(root / "train.yaml"), "--out", str(work / "run"), "--resume"]
    return {
        "restore": ["restore", str(root / "in.png"), "-o", str(work / "out.png"), "--checkpoint", str(bad)],
        "eval": ["eval", "--checkpoint", str(bad), "--max-items", "1", "--out", str(work / "eval")],
        "export": ["export", str(work / "model.onnx"), "--checkpoint", str(bad)],
        "analyze": ["analyze", "spectra", "--checkpoint", str(bad), "--out", str(work / "analysis")],
        "demo": ["demo", "--checkpoint", str(bad), "--out", str(work / "demo")],
        "convert": ["convert", str(bad), str(work / "converted.safetensors")],
    }[command]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_answers_every_bad_checkpoint_in_one_line(files, command, tmp_path, capsys) -> None:
    CODE_MARKER.unlink(missing_ok=True)
    for kind, bad in files.items():
        work = tmp_path / kind.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
        work.mkdir()
        assert main(_argv(command, bad, work)) == 2, kind
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and err[0].startswith(f"exda {command.split()[0]}: error: "), (kind, err)
        assert bad.name in err[0] or command == "train --resume", (kind, err)
        written = [p for p in work.rglob("*") if p.is_file() and "checkpoints" not in p.relative_to(work).parts]
        assert [p.name for p in written] in ([], [LOCK_NAME]), kind  # train's run lock is the run folder's own
    assert not CODE_MARKER.exists()


def test_serve_loader_answers_bad_checkpoints_in_one_line(files) -> None:
    pytest.importorskip("gradio")
    from exda.inference.serve import Models

    for kind, bad in files.items():  # serve loads --checkpoint fully at start, through the shared loader
        with pytest.raises(UserError) as err:
            Models(bad, None, "fp32", torch.device("cpu"))
        assert "\n" not in str(err.value) and bad.name in str(err.value), kind
    assert not CODE_MARKER.exists()


def test_messages_say_what_the_file_is(files, capsys) -> None:
    expected = {"text": "a text file", "html": "an HTML page", "empty": "empty file", "random bytes": "binary data",
                "git lfs pointer": "git lfs pull", "truncated safetensors": "a truncated safetensors file",
                "safetensors, flipped length byte": "damaged safetensors", "safetensors, flipped format byte":
                "unknown format", "truncated .pth": "truncated or damaged zip", "zip that is not a .pth":
                "without data.pkl", "pickle holding code": "(posix.system), which is never run",
                "pickle holding code, named .safetensors": "(posix.system), which is never run",
                "pickle holding a class": "torch.nn.modules.conv.Conv2d", "weights of another architecture":
                "of none of the architectures", "folder without a checkpoint": "no checkpoint",
                "exda checkpoint, flipped weight byte (SHA-256)": "SHA-256"}
    for kind, bad in files.items():
        with pytest.raises(UserError, match=None) as err:
            load_network(bad)
        assert expected[kind] in str(err.value), (kind, str(err.value))


def test_sniff_names_good_files_too(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = exda.create_model("restormer_test")
    ours = save_checkpoint(tmp_path, "last", model=model, config={}, step=1, metrics={}, train_state=None)
    assert sniff(ours).kind == "safetensors" and sniff(ours).metadata["format"] == FORMAT
    torch.save(model.state_dict(), tmp_path / "zip.pth")
    torch.save(model.state_dict(), tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    assert sniff(tmp_path / "zip.pth").what == "a PyTorch checkpoint (zip)"
    assert sniff(tmp_path / "legacy.pth").kind == "pytorch" and sniff(tmp_path / "legacy.pth").loadable
    (tmp_path / "record.json").write_text(ours.with_suffix(".json").read_text())
    assert "JSON record" in sniff(tmp_path / "record.json").what
    # a published state dict loads through the same loader serve and export use, its architecture inferred
    loaded, info = load_network(tmp_path / "zip.pth")
    assert info.arch == "restormer_test"
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values(),
                                                   strict=True))
