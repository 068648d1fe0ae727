"""Nothing is written into the package or the repository unless the user names the path.

Every command runs (cheap settings) from a temporary folder with its default output locations; the
package folder and the source checkout around it must come out unchanged (every file's size and
modification time, and the set of files; ``__pycache__`` and tool caches excepted), and each default
output must land in the current folder. ``exda serve`` is left out: it writes only into a temporary
folder of its own (tests/inference/test_serve.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import exda
from exda.cli import main
from exda.engine.checkpoint import save_checkpoint
from exda.inference.pretrained import default_checkpoint

PACKAGE = Path(exda.__file__).resolve().parent
SKIP = {"__pycache__", ".git", ".pytest_cache", ".ruff_cache", ".hypothesis", ".venv"}


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` (caches skipped): relative path -> (size, mtime in ns)."""
    found = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP and not d.endswith(".egg-info")]
        for name in names:
            path = Path(folder) / name
            stat = path.stat()
            found[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return found


def _changes(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    """Files added, removed or rewritten."""
    return sorted((before.keys() ^ after.keys()) | {k for k in before.keys() & after.keys() if before[k] != after[k]})


def _checkout() -> Path:
    """The source checkout holding the package (an editable install), else the package alone."""
    root = PACKAGE.parent
    return root if (root / "pyproject.toml").is_file() else PACKAGE


@pytest.mark.slow
def test_no_command_writes_into_the_package_or_the_repository(tiny_config, tmp_path: Path, monkeypatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    rng = np.random.default_rng(0)
    for folder in ("clean", "pairs/input", "pairs/target"):
        (work / folder).mkdir(parents=True)
        Image.fromarray((rng.random((21, 19, 3)) * 255).astype(np.uint8)).save(work / folder / "a.png")
    Image.fromarray((rng.random((21, 19, 3)) * 255).astype(np.uint8)).save(work / "photo.png")
    torch.manual_seed(0)
    net = exda.create_model("restormer_test")
    ckpt = save_checkpoint(tmp_path / "ckpt", "last", model=net, config={}, step=1, metrics={}, train_state=None)
    torch.save({"params": net.state_dict()}, work / "published.pth")
    tiny_config["train"]["iters"] = 1
    (work / "tiny.yaml").write_text(json.dumps(tiny_config))
    shipped = str(default_checkpoint("photo"))  # eval next to this file once wrote into the package
    commands = [
        ["models", "--filter", "restormer_test", "--size", "32"],
        ["degrade", "clean", "degraded", "--degradation", "noise25"],
        ["train", "--config", "tiny.yaml"],
        ["eval", "--checkpoint", shipped, "--data", "pairs"],
        ["restore", "photo.png"],
        ["demo", "--crop", "32"],
        ["export", "model.onnx", "--checkpoint", str(ckpt)],
        ["convert", "published.pth", "converted.safetensors", "--arch", "restormer_test"],
        ["analyze", "spectra", "--checkpoint", str(ckpt), "--out", "analysis", "--crop", "32", "--per-photo", "1",
         "--degradation", "noise25"],
        ["bench", "--models", "restormer_test", "--sizes", "32", "--repeats", "1", "--warmup", "0",
         "--skip-backends", "--skip-train", "--matmul-size", "64", "--threads", "1"],
    ]
    package, checkout = _tree(PACKAGE), _tree(_checkout())
    monkeypatch.chdir(work)
    monkeypatch.setenv("PYTHONPATH", str(PACKAGE.parent))  # exda bench's row processes import this exda
    for argv in commands:
        assert main(argv) == 0, argv
    assert _changes(package, _tree(PACKAGE)) == []
    assert _changes(checkout, _tree(_checkout())) == []
    written = {p.name for p in work.iterdir()}
    assert {"degraded", "runs", "eval-pairs", "photo_restored.png", "exda-demo", "model.onnx", "converted.safetensors",
            "analysis", "speed_cpu.json"} <= written, written


@pytest.mark.parametrize("argv", [["bench", "--help"], ["eval", "--help"]])
def test_default_outputs_are_documented_as_the_current_folder(argv, capsys) -> None:
    with pytest.raises(SystemExit):
        main(argv)
    assert "in the current folder" in " ".join(capsys.readouterr().out.split())
