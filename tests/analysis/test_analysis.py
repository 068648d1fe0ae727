"""exda analyze: the three analyses on a tiny ExDA model, two photos, three degradations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import exda
from exda.analysis.common import probe_set
from exda.analysis.embeddings import embed, run_embeddings
from exda.analysis.separability import block_descriptors, run_separability, scores
from exda.analysis.spectra import radial_spectrum, run_spectra
from exda.cli import main
from exda.engine.checkpoint import save_checkpoint
from exda.errors import UserError


@pytest.fixture(scope="module")
def probe():
    return probe_set(("noise", "haze", "low_light"), crop=40, per_photo=3, photos=("astronaut",))


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return [("exda", exda.create_model("exda_restormer_test").eval()),
            ("plain", exda.create_model("restormer_test").eval())]


def test_scores_tell_separable_from_random() -> None:
    rng = np.random.default_rng(0)
    y = [str(i % 3) for i in range(30)]
    separable = np.eye(3)[[int(c) for c in y]] * 5 + rng.normal(0, 0.1, (30, 3))
    good, bad = scores(separable, y), scores(rng.normal(size=(30, 3)), y)
    assert good["probe_accuracy"] == 1.0 and good["silhouette"] > 0.8 and good["fisher_ratio"] > 100
    assert bad["silhouette"] < 0.2 and bad["fisher_ratio"] < 1


def test_descriptors_token_only_where_present(probe, models) -> None:
    exda_desc = block_descriptors(models[0][1], probe.degraded[:4])
    plain_desc = block_descriptors(models[1][1], probe.degraded[:4])
    assert set(exda_desc) == set(plain_desc) and "latent.0" in exda_desc
    assert all("token" in d and "pooled" in d for d in exda_desc.values())
    assert all("token" not in d for d in plain_desc.values())
    latent = exda_desc["latent.0"]["token"]  # C x G*G softmax weights per channel: rows sum to 1
    assert latent.shape[0] == 4
    np.testing.assert_allclose(latent.reshape(4, -1, 16).sum(-1), 1.0, atol=1e-5)


def test_radial_spectrum_finds_the_frequency() -> None:
    y, x = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    low, high = torch.cos(2 * torch.pi * x * 2 / 64), torch.cos(2 * torch.pi * x * 24 / 64)
    assert radial_spectrum(low).argmax() < radial_spectrum(high).argmax()
    assert radial_spectrum(high + 0 * y).sum() == pytest.approx(1.0)


@pytest.mark.slow
def test_analyses_write_json_and_plots(probe, models, tmp_path: Path) -> None:
    sep = run_separability(models, probe, tmp_path)
    assert set(sep["models"]) == {"exda", "plain"}
    assert 0 <= sep["models"]["exda"]["latent.0"]["token"]["probe_accuracy"] <= 1
    emb = run_embeddings(models[:1], probe, tmp_path)
    assert emb["per_task"]["noise"]["degraded"] > 0
    spec = run_spectra(models, probe, tmp_path)
    plain = spec["features"]["plain"]["mean |log ratio| phi(v) vs v"]
    assert all(v < 1e-9 for v in plain.values())  # no value transform: phi(v) is v
    assert any(v > 0 for v in spec["features"]["exda"]["mean |log ratio| phi(v) vs v"].values())
    for name in ("separability", "embeddings", "spectra"):
        assert json.loads((tmp_path / f"{name}.json").read_text())
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    assert (tmp_path / "embedding_2d.png").is_file()


def test_embedding_is_unit_norm(probe) -> None:
    e = embed(probe.clean[:2])
    assert torch.allclose(e.norm(dim=1), torch.ones(2), atol=1e-5)


def test_cli_analyze(tmp_path: Path, models) -> None:
    ckpt = save_checkpoint(tmp_path / "run", "last", model=models[1][1], config={}, step=1, metrics={},
                           train_state=None)
    argv = ["analyze", "embeddings", "--checkpoint", str(ckpt), "--out", str(tmp_path / "a"), "--crop", "40",
            "--per-photo", "1", "--degradation", "noise", "haze"]
    assert main(argv) == 0 and (tmp_path / "a" / "embeddings.png").is_file()
    assert main([*argv[:-3], "--degradation", "fog"]) == 2
    with pytest.raises(UserError, match="crop"):
        probe_set(("noise",), crop=8)
