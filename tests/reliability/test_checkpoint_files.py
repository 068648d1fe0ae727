"""Bad checkpoint files: every command that takes a checkpoint answers each with one line and exit 2.

The kinds are ``benchmarks/robustness.py``'s (``bad_checkpoints``: text, HTML, empty, truncated or
byte-flipped safetensors, a folder, pickles holding classes or code (never run), random bytes, a Git LFS
pointer, valid weights of an architecture exda does not have, ...), each given to ``restore``, ``eval``,
``export``, ``analyze``, ``demo``, ``convert``, ``train --resume`` and to ``exda serve``'s loader
(:class:`exda.inference.serve.Models`, which loads through the same :class:`exda.inference.restorer.Restorer`).
The benchmark counts the same pairs into benchmarks/results/robustness.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import exda
from exda.cli import main
from exda.engine.checkpoint import save_checkpoint
from exda.engine.run_lock import LOCK_NAME
from exda.errors import UserError
from exda.file_kind import sniff
from exda.inference.checkpoint_format import FORMAT
from exda.inference.loader import load_network

COMMANDS = ["restore", "eval", "export", "analyze", "demo", "convert", "train --resume"]
# What each kind's error line says it is (load_network, the loader every command shares).
SAYS = {
    "text file": "a text file", "HTML page (a failed download)": "an HTML page", "empty file": "empty file",
    "random bytes": "binary data", "Git LFS pointer": "git lfs pull",
    "exda checkpoint's JSON record": "JSON record, not its weights", "PNG image": "a PNG image",
    "truncated safetensors": "a truncated safetensors file",
    "safetensors cut inside its header": "its header alone needs",
    "safetensors, flipped header-length byte": "damaged safetensors",
    "safetensors, flipped high header-length byte": "its header length reads",
    "safetensors, flipped byte in its format": "unknown format",
    "exda checkpoint, flipped weight byte (record's SHA-256)": "SHA-256",
    "truncated .pth (zip)": "truncated or damaged zip", "damaged legacy pickle": "its pickle does not parse",
    "zip archive without a checkpoint": "without data.pkl",
    "pickle holding code": "(posix.system), which is never run",
    "pickle holding code, named .safetensors": "(posix.system), which is never run",
    "pickle holding a class (whole nn.Module)": "torch.nn.modules.conv.Conv2d",
    "weights of an architecture exda lacks": "of none of the architectures",
    "folder without a checkpoint": "no checkpoint",
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, robustness) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad_checkpoints")
    robustness.CODE_MARKER.unlink(missing_ok=True)
    return robustness.bad_checkpoints(folder)


@pytest.fixture(scope="module")
def config_and_image(tmp_path_factory: pytest.TempPathFactory, robustness) -> tuple[Path, Path]:
    """What the commands need beside the checkpoint: a training config (train --resume) and a photo."""
    folder = tmp_path_factory.mktemp("command_inputs")
    (folder / "train.yaml").write_text(json.dumps(robustness.CKPT_TRAIN_CONFIG))
    Image.fromarray((np.random.default_rng(0).random((13, 11, 3)) * 255).astype(np.uint8)).save(folder / "in.png")
    return folder / "train.yaml", folder / "in.png"


def test_the_kinds_are_the_benchmarks_and_each_has_its_message(files, robustness) -> None:
    assert set(files) == {*SAYS, robustness.RESUME_ONLY}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_answers_every_bad_checkpoint_in_one_line(files, config_and_image, robustness, command,
                                                                tmp_path, capsys) -> None:
    for kind, bad in files.items():
        work = tmp_path / kind.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
        work.mkdir()
        argv = robustness.checkpoint_argv(command, bad, work, *config_and_image)
        if argv is None:  # a valid checkpoint of another architecture: only train --resume refuses it
            continue
        assert main(argv) == 2, kind
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and err[0].startswith(f"exda {command.split()[0]}: error: "), (kind, err)
        assert bad.name in err[0] or command == "train --resume", (kind, err)
        written = [p for p in work.rglob("*") if p.is_file() and "checkpoints" not in p.relative_to(work).parts]
        assert [p.name for p in written] in ([], [LOCK_NAME]), kind  # train's run lock is the run folder's own
    assert not robustness.CODE_MARKER.exists()


def test_serve_loader_answers_bad_checkpoints_in_one_line(files, robustness) -> None:
    pytest.importorskip("gradio")
    from exda.inference.serve import Models

    for kind, bad in files.items():  # serve loads --checkpoint fully at start, through the shared loader
        if kind == robustness.RESUME_ONLY:
            continue
        with pytest.raises(UserError) as err:
            Models(bad, None, "fp32", torch.device("cpu"))
        assert "\n" not in str(err.value) and bad.name in str(err.value), kind
    assert not robustness.CODE_MARKER.exists()


def test_messages_say_what_the_file_is(files) -> None:
    for kind, says in SAYS.items():
        with pytest.raises(UserError) as err:
            load_network(files[kind])
        assert says in str(err.value), (kind, str(err.value))


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
