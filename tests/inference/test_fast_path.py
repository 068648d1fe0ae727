"""The compiled fast path's cache and decisions (exda/inference/compiled.py), the thread choice
(exda/inference/threads.py) and the tiler's pass plan. Compiling a real network takes minutes on 2 CPU
cores, so the artefact itself is measured in benchmarks/compiled_path.py; here the compiler is replaced
by a stand-in, except in the one test that EXDA_TEST_COMPILE=1 enables."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from exda.inference import compiled as compiled_module
from exda.inference.compiled import CompiledInference, cache_dir, weights_digest
from exda.inference.fast import optimize_for_inference
from exda.inference.threads import choose_threads, idle_cores
from exda.inference.tiling import pass_plan, tile_starts
from exda.models.registry import create_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return create_model("exda_restormer_test").eval()


def test_cache_dir_is_the_user_cache_and_can_be_overridden(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(compiled_module.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "exda" / "compiled"
    monkeypatch.setenv(compiled_module.CACHE_ENV, str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(compiled_module.CACHE_ENV)
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert not cache_dir().is_relative_to(ROOT)


def test_weights_digest_follows_the_weights_not_their_layout(model: nn.Module) -> None:
    digest = weights_digest(model)
    assert weights_digest(model.to(memory_format=torch.channels_last)) == digest
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    assert weights_digest(model) != digest


def test_artefact_key_names_model_precision_and_shape(model: nn.Module) -> None:
    runner = CompiledInference(optimize_for_inference(model, precision="fp32"), "auto")
    name = runner.key((1, 3, 64, 48)).filename()
    assert name.startswith("exda_restormer_test-") and "-fp32-1x3x64x48-torch" in name and name.endswith(".pt2")


class _FakeCompiler:
    """Stands in for AOTInductor: an "artefact" is a file; the compiled forward is the eager fast path."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fast: nn.Module) -> None:
        self.compiled: list[tuple[int, ...]] = []
        self.loaded: list[Path] = []

        def compile_artefact(fast_path: nn.Module, shape: tuple[int, ...], path: Path) -> float:
            self.compiled.append(shape)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"artefact")
            return 1.0

        def load_artefact(path: Path):
            self.loaded.append(path)
            return fast

        monkeypatch.setattr(compiled_module, "compile_artefact", compile_artefact)
        monkeypatch.setattr(compiled_module, "load_artefact", load_artefact)


def test_modes_compile_load_or_fall_back(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model: nn.Module) -> None:
    fast = optimize_for_inference(model, precision="fp32")
    fake = _FakeCompiler(monkeypatch, fast)
    x = torch.rand(1, 3, 24, 20, generator=torch.Generator().manual_seed(0))
    expected = fast(x)

    auto = CompiledInference(fast, "auto", folder=tmp_path)
    assert not auto.expect(tuple(x.shape), calls=1)  # too little work to win a compile back
    assert torch.equal(auto(x), expected) and fake.compiled == [] and "fast eager path" in auto.describe()

    on = CompiledInference(fast, "on", folder=tmp_path)
    assert torch.equal(on(x), expected)
    assert fake.compiled == [tuple(x.shape)] and on.events[0].action == "compiled"

    later = CompiledInference(fast, "auto", folder=tmp_path)  # a later process: the artefact is cached
    assert later.expect(tuple(x.shape), calls=1)
    later(x)
    assert later.events[0].action == "loaded" and fake.compiled == [tuple(x.shape)]
    assert "compiled fast path" in later.describe() and "loaded 20x24" in later.describe()

    off = CompiledInference(fast, "off", folder=tmp_path)
    off(x)
    assert off.events == [] and len(fake.loaded) == 2


def test_auto_compiles_when_the_announced_work_wins_it_back(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                            model: nn.Module) -> None:
    fast = optimize_for_inference(model, precision="fp32")
    _FakeCompiler(monkeypatch, fast)
    auto = CompiledInference(fast, "auto", folder=tmp_path)
    shape = (1, 3, 896, 896)
    gain = 1 - 1 / compiled_module.ASSUMED_SPEEDUP
    few = int(compiled_module.ASSUMED_COMPILE_S / (10.0 * gain))
    assert not auto.expect(shape, calls=few - 1, eager_call_s=10.0)
    assert auto.expect(shape, calls=few + 1, eager_call_s=10.0)


def test_unknown_mode_is_refused(model: nn.Module) -> None:
    with pytest.raises(ValueError, match="compile mode"):
        CompiledInference(optimize_for_inference(model), "always")  # type: ignore[arg-type]


@pytest.mark.parametrize(("h", "w", "tile"), [(37, 31, None), (37, 31, 32), (300, 200, 128), (64, 64, 512)])
def test_pass_plan_matches_the_tiler(h: int, w: int, tile: int | None) -> None:
    overlap = 16
    shape, calls = pass_plan((1, 3, h, w), tile=tile, overlap=overlap, margin=8)
    ph, pw = h + 16, w + 16
    if tile is None or max(ph, pw) <= tile:
        assert (shape, calls) == ((1, 3, ph, pw), 1)
    else:
        assert shape == (1, 3, min(tile, ph), min(tile, pw))
        assert calls == len(tile_starts(ph, tile, overlap)) * len(tile_starts(pw, tile, overlap))


def test_threads_are_the_idle_cores_or_what_is_asked() -> None:
    assert choose_threads(3) == 3
    with pytest.raises(ValueError):
        choose_threads(0)
    idle = idle_cores(0.05)
    assert idle is None or 0 <= idle <= len(os.sched_getaffinity(0))
    assert 1 <= choose_threads() <= max(1, len(os.sched_getaffinity(0)), torch.get_num_threads())


@pytest.mark.skipif(not os.environ.get("EXDA_TEST_COMPILE"), reason="compiles with AOTInductor (minutes)")
def test_real_artefact_matches_the_eager_fast_path(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GELU(), nn.Conv2d(8, 3, 3, padding=1))
    net.model_name = "tiny_conv"  # type: ignore[assignment]
    net.in_channels = 3  # type: ignore[assignment]
    fast = optimize_for_inference(net, precision="fp32")
    runner = CompiledInference(fast, "on", folder=tmp_path)
    x = torch.rand(1, 3, 16, 16)
    assert torch.allclose(runner(x), fast(x), atol=1e-5)
    assert CompiledInference(fast, "auto", folder=tmp_path).expect((1, 3, 16, 16), calls=1)


@pytest.mark.parametrize("upsample", ["nearest", "aligned", "bilinear"])
@pytest.mark.parametrize(("h", "w", "grid"), [(37, 31, 4), (16, 16, 4), (3, 5, 4), (9, 7, 2)])
def test_channels_last_token_pooling_matches_the_reference(upsample: str, h: int, w: int, grid: int) -> None:
    """The fast path's NHWC pooling against the NCHW one, computed in float64 (the reference)."""
    from exda.layers.global_token import GlobalSpatialToken, TokenOptions

    token = GlobalSpatialToken(2, "row", TokenOptions(grid=grid, upsample=upsample))
    x = torch.randn(2, 6, h, w, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    reference = token.pool(x)
    fast = token.pool(x.float().contiguous(memory_format=torch.channels_last))
    assert fast.shape == reference.shape
    torch.testing.assert_close(fast.double(), reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(token.tokens(x.contiguous(memory_format=torch.channels_last)), token.tokens(x))
