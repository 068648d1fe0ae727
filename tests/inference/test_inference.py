"""One inference API: every command that takes ``--checkpoint`` reads every checkpoint kind through the one
loader (an official Restormer ``.pth`` in BasicSR's layout, a PromptIR Lightning ``.ckpt``); the loader's
record, its EMA choice and single build; the restorer cache that ``exda restore``, ``exda serve`` and
``exda.restore`` share. (The import layering is tests/test_imports.py.)"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import exda
from exda.cli import build_parser, main
from exda.commands import demo as demo_command
from exda.engine import demo
from exda.inference import checkpoint_format
from exda.inference.loader import load_network
from exda.inference.pretrained import default_checkpoint
from exda.inference.restorer import Restorer, RestorerCache
from exda.models.official import OFFICIAL_MAPPINGS

KEYS = Path(__file__).resolve().parents[1] / "assets" / "official_keys"
ROOT = Path(__file__).resolve().parents[2]


def official_names(family: str) -> dict[str, tuple[str, int]]:
    """Our key -> (the official code's key, its number of dimensions), from the keys recorded from the
    official code (tests/assets/official_keys) and the family's registered mapping."""
    names = {}
    for official, shape in json.loads((KEYS / f"{family}.json").read_text())["keys"].items():
        (ours,) = OFFICIAL_MAPPINGS[family]({official: torch.empty(0)})
        names[ours] = (official, len(shape))
    return names


def official_weights(arch: str, family: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Seeded random weights of ``arch``: as the official code names them, and as exda does."""
    torch.manual_seed(0)
    ours = exda.create_model(arch).state_dict()
    names = official_names(family)
    official = {}
    for key, value in ours.items():
        name, dims = names[key]
        official[name] = value.reshape((1,) * (dims - value.dim()) + tuple(value.shape))  # PromptIR's batch axis
    return official, ours


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[str], str]]:
    """An official Restormer ``.pth`` (BasicSR: ``params``) named with ``--arch``, and a PromptIR Lightning
    ``.ckpt`` (``state_dict``, ``net.`` prefix, a loss network beside it) whose architecture is inferred."""
    folder = tmp_path_factory.mktemp("published")
    restormer, _ = official_weights("restormer_test", "restormer")
    torch.save({"params": restormer}, folder / "restormer.pth")
    promptir, _ = official_weights("promptir_test", "promptir")
    lightning = {f"net.{k}": v for k, v in promptir.items()} | {"loss_fn.vgg.weight": torch.zeros(2)}
    torch.save({"state_dict": lightning, "epoch": 3, "global_step": 120}, folder / "promptir.ckpt")
    return {"restormer .pth": (folder / "restormer.pth", ["--arch", "restormer_test"], "restormer_test"),
            "promptir .ckpt": (folder / "promptir.ckpt", [], "promptir_test")}


@pytest.mark.parametrize("kind", ["restormer .pth", "promptir .ckpt"])
def test_published_files_load_with_their_exact_weights(published, kind: str) -> None:
    path, _, arch = published[kind]
    net, info = load_network(path)
    _, ours = official_weights(arch, arch.removesuffix("_test"))
    assert info.arch == arch and info.step == 0 and not info.ema and info.path == path
    expected = ("basicsr", "params") if path.suffix == ".pth" else ("lightning", "state_dict")
    assert (info.kind, info.container) == expected
    assert info.in_channels == 3 and info.parameters == sum(v.numel() for v in ours.values())
    assert all(torch.equal(v, ours[k]) for k, v in net.state_dict().items())
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.arch = "other"


def _image(folder: Path, name: str = "in.png", size: tuple[int, int] = (23, 19)) -> Path:
    pixels = (np.random.default_rng(0).random((*size, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(folder / name)
    return folder / name


@pytest.mark.parametrize("kind", ["restormer .pth", "promptir .ckpt"])
@pytest.mark.parametrize("command", ["restore", "serve", "eval", "demo", "export", "analyze"])
def test_every_command_reads_published_checkpoints(published, command: str, kind: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    path, arch_flag, arch = published[kind]
    given = ["--checkpoint", str(path), *arch_flag]
    if command == "restore":
        assert main(["restore", str(_image(tmp_path)), "-o", str(tmp_path / "out.png"), *given]) == 0
        assert Image.open(tmp_path / "out.png").size == (19, 23)
    elif command == "serve":  # the page's model loader, as `exda serve --checkpoint F [--arch A]` builds it
        from exda.commands.serve import options_from
        from exda.inference.serve import Models

        options = options_from(build_parser().parse_args(["serve", *given]))
        models = Models(options.checkpoint, None, "fp32", torch.device("cpu"), options.arch)
        loaded = models.for_request(tmp_path / "in.png", "")
        assert f"({arch}, " in loaded.description
        assert loaded.restorer.restore_file(_image(tmp_path), tmp_path / "out.png") is None
    elif command == "eval":
        for folder in ("input", "target"):
            (tmp_path / "data" / folder).mkdir(parents=True)
            _image(tmp_path / "data" / folder, "a.png")
        assert main(["eval", *given, "--data", str(tmp_path / "data"), "--out", str(tmp_path / "eval")]) == 0
        settings = json.loads((tmp_path / "eval" / "results.json").read_text())["settings"]
        assert settings["model"] == arch and settings["checkpoint"] == str(path) and settings["step"] == 0
    elif command == "demo":
        monkeypatch.setattr(demo_command, "compare", functools.partial(demo.compare, degradations=("clean",)))
        assert main(["demo", *given, "--crop", "32", "--out", str(tmp_path / "demo")]) == 0
        assert json.loads((tmp_path / "demo" / "results.json").read_text())["model"] == arch
    elif command == "export":
        pytest.importorskip("onnx")
        assert main(["export", str(tmp_path / "model.onnx"), *given]) == 0
        assert f"exported {arch} (step 0)" in capsys.readouterr().out
    else:
        argv = ["analyze", "spectra", *given, "--out", str(tmp_path / "analysis"), "--crop", "32", "--per-photo",
                "1", "--degradation", "noise"]
        assert main(argv) == 0
        assert arch in (tmp_path / "analysis" / "spectra.json").read_text()


def test_arch_must_match_an_exda_checkpoint_in_one_line(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    ckpt = tiny_checkpoint
    src = _image(tmp_path)
    for command in (["restore", str(src)], ["export", str(tmp_path / "m.onnx")]):
        assert main([*command, "--checkpoint", str(ckpt), "--arch", "promptir_test"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"exda {command[0]}: error: {ckpt} is an exda checkpoint of restormer_test, not --arch "
                       "promptir_test"]


def test_basicsr_ema_weights_unless_use_ema_is_off(tmp_path: Path) -> None:
    official, ours = official_weights("restormer_test", "restormer")
    torch.save({"params": {k: v + 1 for k, v in official.items()}, "params_ema": official}, tmp_path / "ema.pth")
    ema, info = load_network(tmp_path / "ema.pth", arch="restormer_test")
    assert info.ema and info.container == "params_ema"
    assert all(torch.equal(v, ours[k]) for k, v in ema.state_dict().items())
    raw, info = load_network(tmp_path / "ema.pth", arch="restormer_test", use_ema=False)
    assert not info.ema and info.container == "params"
    assert all(torch.equal(v, ours[k] + 1) for k, v in raw.state_dict().items())


def test_a_legacy_checkpoint_is_built_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped medical model predates the token options (its kwargs are completed from a model on the
    meta device): one real build per load."""
    path = default_checkpoint("medical")
    builds = []
    real = checkpoint_format.create_model

    def counted(name: str, **kwargs):
        builds.append(str(torch.get_default_device()))
        return real(name, **kwargs)

    monkeypatch.setattr(checkpoint_format, "create_model", counted)
    _, info = load_network(path)
    assert "token_upsample" in info.kwargs  # the first reading, filled in
    assert builds.count("cpu") == 1


def test_the_cache_loads_each_checkpoint_once_and_keeps_the_most_recent(make_checkpoint, tmp_path: Path) -> None:
    paths = [make_checkpoint(tmp_path / f"run{i}", step=i) for i in range(3)]
    cache = RestorerCache(size=2)
    first = cache.get(paths[0], device="cpu")
    assert isinstance(first, Restorer) and cache.get(tmp_path / "run0", device="cpu") is first  # a run folder too
    assert cache.get(paths[0], precision="fp32", device="cpu") is not first  # another precision: another restorer
    cache.get(paths[1], device="cpu")
    assert len(cache) == 2 and cache.get(paths[0], device="cpu") is not first  # dropped, loaded again
    make_checkpoint(tmp_path / "run2", step=9)
    assert cache.get(paths[2], device="cpu").info.step == 9  # a new version of the file is a new restorer


def test_the_api_and_serve_share_the_restorer_cache(make_checkpoint, tmp_path: Path) -> None:
    from exda.inference.restorer import RESTORERS
    from exda.inference.serve import Models

    ckpt = make_checkpoint(tmp_path / "run")
    exda.restore(torch.rand(1, 3, 9, 11), checkpoint=ckpt, device="cpu")
    api = RESTORERS.get(ckpt, device="cpu")
    assert Models(ckpt, None, "auto", torch.device("cpu")).for_request(tmp_path / "a.png", "").restorer is api
