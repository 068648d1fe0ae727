"""benchmarks/token_ablation.py: the token emptied or removed changes the network as it says, and no more."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

import exda
from exda.engine.checkpoint import save_checkpoint

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "token_ablation.py"
spec = importlib.util.spec_from_file_location("token_ablation", SCRIPT)
token_ablation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(token_ablation)


def test_a_flat_token_is_the_token_of_a_uniform_input() -> None:
    torch.manual_seed(0)
    net = exda.create_model("exda_restormer_test").eval()
    (holder, *_) = token_ablation.token_holders(net)
    uniform = torch.full((2, 8, 12, 20), 0.3)
    flat = token_ablation.FlatToken(holder.token.heads, holder.token.kind, holder.token.options)
    torch.testing.assert_close(flat.tokens(uniform), holder.token.tokens(uniform))


def test_each_variant_changes_the_network_and_is_undone_afterwards() -> None:
    torch.manual_seed(0)
    net = exda.create_model("exda_restormer_test").eval()
    x = torch.rand(1, 3, 24, 32)
    with torch.no_grad():
        intact = net(x)
        for variant in ("flat", "removed"):
            with token_ablation.token_variant(net, variant):
                changed = net(x)
            assert not torch.allclose(changed, intact, atol=1e-6), variant
        torch.testing.assert_close(net(x), intact, rtol=0, atol=0)
        plain = exda.create_model("exda_restormer_test", global_token="off").eval()
        plain.load_state_dict(net.state_dict())  # the token has no weights: the same network without it
        with token_ablation.token_variant(net, "removed"):
            torch.testing.assert_close(net(x), plain(x))


def test_the_benchmark_scores_every_variant_and_the_twin(tmp_path: Path, write_photos) -> None:
    paths = {}
    for name, kwargs in (("exda", {}), ("plain", {"value_transform": "off", "global_token": "off"})):
        torch.manual_seed(0)
        model = exda.create_model("exda_restormer_test", **kwargs)
        paths[name] = save_checkpoint(tmp_path / name, "last", model=model, config={}, step=7, metrics={},
                                      train_state=None)
    write_photos(tmp_path / "pool" / "heldout", ("a", "b"), 37, 45)
    out = tmp_path / "token.json"
    assert token_ablation.main(["--checkpoint", str(paths["exda"]), "--twin", str(paths["plain"]), "--pool",
                                str(tmp_path / "pool"), "--max-side", "40", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["photo_count"] == 2 and record["checkpoint"]["step"] == 7
    assert set(record["variants"]) == set(token_ablation.VARIANTS)
    for variant in token_ablation.VARIANTS[1:]:
        gains = record["gain"][variant]["per_task"]
        assert set(gains) == set(token_ablation.TASKS)
        for task, gain in gains.items():
            expected = record["variants"][variant][task]["psnr"] - record["variants"]["intact"][task]["psnr"]
            assert gain == pytest.approx(expected, abs=1e-3)
    assert len(record["twin"]["tasks"]["clean"]["shift"]) == 3
    assert out.with_suffix(".md").read_text().count("\n| ") == len(token_ablation.TASKS) + 2  # header, rows, mean


def test_a_network_without_a_token_is_one_line(tmp_path: Path, tiny_checkpoint: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert token_ablation.main(["--checkpoint", str(tiny_checkpoint), "--pool", str(tmp_path),
                                "--out", str(tmp_path / "x.json")]) == 2
    assert "has no global spatial token" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
