"""`exda degrade`: a folder of clean images becomes a reproducible paired benchmark."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data

from exda.commands import degrade as degrade_command
from exda.data.io import load_image, save_image, to_tensor
from exda.degradations import get_degradation, list_degradations
from exda.errors import UserError


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    degrade_command.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def clean_dir(tmp_path: Path) -> Path:
    """Two small images of different formats and channel counts, plus a file that is not an image."""
    folder = tmp_path / "clean"
    save_image(folder / "b_astronaut.png", data.astronaut()[::12, ::14].astype(np.float32) / 255)
    save_image(folder / "a_camera.tif", data.camera()[::14, ::12].astype(np.float32) / 255, bit_depth=16)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_writes_pairs_and_manifest_reproducibly(clean_dir: Path, tmp_path: Path) -> None:
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    for out in (out_a, out_b):
        assert degrade_command.run(parse(str(clean_dir), str(out), "-d", "low_haze_rain", "--seed", "3")) == 0
    manifest = json.loads((out_a / "manifest.json").read_text())
    assert manifest["degradation"] == "low_haze_rain" and manifest["seed"] == 3 and manifest["strength"] == 1.0
    assert [e["source"] for e in manifest["images"]] == ["a_camera.tif", "b_astronaut.png"]
    for entry in manifest["images"]:
        for key in ("input", "target"):
            assert (out_a / entry[key]).read_bytes() == (out_b / entry[key]).read_bytes()
        source = load_image(clean_dir / entry["source"])
        target = load_image(out_a / entry["target"])
        assert target.bit_depth == source.bit_depth and np.array_equal(target.pixels, source.pixels)
        # the stored params replay the stored input (up to the output's quantisation)
        replay = get_degradation("low_haze_rain").apply(to_tensor(source.pixels)[None], **entry["params"])
        stored = to_tensor(load_image(out_a / entry["input"]).pixels)[None]
        assert torch.allclose(replay, stored, atol=0.5 / (2 ** source.bit_depth - 1) + 1e-6)
    assert manifest == json.loads((out_b / "manifest.json").read_text())
    assert sorted(p.name for p in (out_a / "input").iterdir()) == ["a_camera.png", "b_astronaut.png"]


def test_seed_changes_the_benchmark(clean_dir: Path, tmp_path: Path) -> None:
    for seed in ("0", "1"):
        degrade_command.run(parse(str(clean_dir), str(tmp_path / seed), "-d", "noise25", "--seed", seed))
    first, second = ((tmp_path / s / "input" / "b_astronaut.png").read_bytes() for s in ("0", "1"))
    assert first != second


def test_list_prints_every_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert degrade_command.run(parse("--list")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(list_degradations())
    assert any(line.split()[0] == "clean" and "identity" in line for line in lines)


def test_user_errors(clean_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    cases = [
        (parse(str(tmp_path / "missing"), str(tmp_path / "o"), "-d", "rain"), "input folder not found"),
        (parse(str(tmp_path / "empty"), str(tmp_path / "o"), "-d", "rain"), "no images"),
        (parse(str(clean_dir), str(tmp_path / "o"), "-d", "fog"), "unknown degradation"),
        (parse(str(clean_dir), str(clean_dir), "-d", "rain"), "refusing"),
        (parse(str(clean_dir), str(clean_dir / "out"), "-d", "rain"), "refusing"),
        (parse(str(clean_dir), str(tmp_path), "-d", "rain"), None),  # fine: clean/ is not input/ or target/
        (parse(str(clean_dir), str(tmp_path / "o"), "-d", "rain", "--strength", "-1"), "strength"),
        (parse(str(clean_dir)), "usage"),
    ]
    for args, message in cases:
        if message is None:
            assert degrade_command.run(args) == 0
            continue
        with pytest.raises(UserError, match=message):
            degrade_command.run(args)
    with pytest.raises(UserError, match="refusing to overwrite"):
        degrade_command.run(parse(str(tmp_path / "target"), str(tmp_path), "-d", "rain"))
    assert sorted(p.name for p in clean_dir.iterdir()) == ["a_camera.tif", "b_astronaut.png", "notes.txt"]


def test_exda_command_dispatches_and_exits_2_on_user_error(tmp_path: Path) -> None:
    from exda.cli import main

    assert main(["degrade", "--list"]) == 0
    assert main(["degrade", str(tmp_path / "missing"), str(tmp_path / "out"), "-d", "rain"]) == 2
