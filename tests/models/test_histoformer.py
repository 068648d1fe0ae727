"""Histoformer: exact count, official key mapping (recorded key list), DHSA pieces, ExDA token alignment,
and Histoformer's Pearson loss. Equality with the official code itself: benchmarks/official_equivalence.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import exda
from exda.engine.config import load_config
from exda.engine.losses import RestorationLoss, pearson_loss
from exda.layers.attention import cosine_logits
from exda.models.histoformer import HistogramAttention, from_bins, softmax_with_zero, to_bins
from exda.models.official import OFFICIAL_MAPPINGS, infer_arch
from exda.models.profile import count_parameters, profile_model

OFFICIAL_KEYS = Path(__file__).resolve().parents[1] / "assets" / "official_keys" / "histoformer.json"


def test_published_parameter_count():
    with torch.device("meta"):
        assert count_parameters(exda.create_model("histoformer")) == 16_615_100


def test_official_keys_map_to_exactly_ours():
    record = json.loads(OFFICIAL_KEYS.read_text())
    with torch.device("meta"):
        official = {key: torch.empty(shape) for key, shape in record["keys"].items()}
        ours = exda.create_model("histoformer").state_dict()
    mapped = OFFICIAL_MAPPINGS["histoformer"](official)
    assert len(mapped) == len(official) == len(ours)
    assert {k: tuple(v.shape) for k, v in mapped.items()} == {k: tuple(v.shape) for k, v in ours.items()}


def test_arch_is_inferred_from_official_keys():
    record = json.loads(OFFICIAL_KEYS.read_text())
    assert infer_arch({k: torch.empty(shape, device="meta") for k, shape in record["keys"].items()}) == "histoformer"


def test_exda_overhead_is_small():
    with torch.device("meta"):
        base, exda_version = (count_parameters(exda.create_model(n)) for n in ("histoformer", "exda_histoformer"))
    assert 0 < exda_version / base - 1 <= 0.01  # +0.29%: a 3x3 depthwise conv per block; the token is free
    base_flops, flops = (profile_model(n, (64, 64))[1] for n in ("histoformer_test", "exda_histoformer_test"))
    assert 0 < flops / base_flops - 1 <= 0.05


def test_softmax_with_zero_is_histoformers_softmax_1():
    logits = torch.randn(3, 5, 7, dtype=torch.float64) * 4
    expected = logits.exp() / (logits.exp().sum(-1, keepdim=True) + 1)
    torch.testing.assert_close(softmax_with_zero(logits), expected, rtol=1e-12, atol=0)
    assert torch.isfinite(softmax_with_zero(torch.full((2, 3), 1e4))).all()  # exp(1e4) would overflow


@pytest.mark.parametrize("box", [True, False])
def test_bins_are_ranges_or_strided_samples_of_the_sorted_pixels(box):
    heads, c, n = 2, 4, 12
    t = torch.arange(c * n, dtype=torch.float64).view(1, c, n)
    binned = to_bins(t, heads, box)  # 1 x heads x (c/heads * heads) x n/heads
    m = n // heads
    for channel in range(c):
        head, local = divmod(channel, c // heads)
        for b in range(heads):
            pixels = torch.arange(b * m, (b + 1) * m) if box else torch.arange(b, n, heads)
            assert torch.equal(binned[0, head, local * heads + b], t[0, channel, pixels])
    assert torch.equal(from_bins(binned, c, box), t)


def test_exda_token_meets_each_row_over_its_own_pixels():
    """The GST stays a spatial map inside DHSA: computed without any sort, in image order, the token's
    logit for a row and the token's output term equal what the sorted, binned attention produces."""
    torch.manual_seed(0)
    attn = HistogramAttention(dim=4, heads=1, value_transform="dwconv_gelu", global_token="row").double()
    with torch.no_grad():
        attn.temperature.fill_(1.7)
    x = torch.randn(2, 4, 7, 9, dtype=torch.float64)
    b, c, h, w = x.shape
    with torch.no_grad():
        got = attn(x)
        sorted_h, index_h = x[:, :2].sort(dim=-2)
        sorted_hw, index_w = sorted_h.sort(dim=-1)
        q1, k1, q2, k2, v = attn.qkv_dwconv(attn.qkv(torch.cat([sorted_hw, x[:, 2:]], 1))).chunk(5, 1)
        v, order = attn.value(v).flatten(2).sort(dim=-1)
        tok = attn.token.tokens(x).view(b, 1, h * w)  # image order, one head

        def path(q, k):
            q, k = q.flatten(2), k.flatten(2)
            rows = cosine_logits(q.gather(2, order), k.gather(2, order))
            own = torch.nn.functional.cosine_similarity(q, tok, dim=-1).unsqueeze(-1)  # no sort involved
            weights = softmax_with_zero(torch.cat([rows, own], -1) * 1.7)
            mixed = torch.empty_like(v).scatter_(2, order, weights[..., :-1] @ v)
            return mixed + weights[..., -1:] * tok

        out = attn.project_out((path(q1, k1) * path(q2, k2)).view(b, c, h, w))
        first = torch.empty_like(out[:, :2]).scatter_(-1, index_w, out[:, :2])
        first = torch.empty_like(first).scatter_(-2, index_h, first)
    torch.testing.assert_close(got, torch.cat([first, out[:, 2:]], 1), rtol=1e-12, atol=1e-12)


def test_degradation_descriptor():
    model = exda.create_model("exda_histoformer_test").eval()
    d = model.degradation_descriptor(torch.rand(2, 3, 37, 31))
    assert d.shape == (2, 96 * 16) and torch.allclose(d.view(2, 96, 16).sum(-1), torch.ones(2, 96))
    with pytest.raises(ValueError, match="no global spatial token"):
        exda.create_model("histoformer_test").degradation_descriptor(torch.rand(1, 3, 16, 16))


def test_columns_token_is_refused_with_a_reason():
    with pytest.raises(exda.errors.UserError, match="histogram attention takes global_token"):
        exda.create_model("exda_histoformer_test", global_token="columns")


def test_pearson_loss_matches_numpy_and_is_scale_free():
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.rand(3, 3, 9, 7, generator=gen), torch.rand(3, 3, 9, 7, generator=gen)
    pairs = zip(pred.numpy(), target.numpy(), strict=True)
    expected = np.mean([(1 - np.corrcoef(p.ravel(), t.ravel())[0, 1]) / 2 for p, t in pairs])
    assert pearson_loss(pred, target).item() == pytest.approx(expected, abs=1e-6)
    assert pearson_loss(2 * target + 0.1, target).item() == pytest.approx(0.0, abs=1e-6)
    assert pearson_loss(1 - target, target).item() == pytest.approx(1.0, abs=1e-6)
    plain = RestorationLoss("l1")(pred, target)
    both = RestorationLoss("l1", pearson_weight=1.0)(pred, target)
    assert both.item() == pytest.approx(plain.item() + expected, abs=1e-6)


def test_pearson_weight_is_checked():
    with pytest.raises(exda.errors.UserError, match="loss.pearson_weight"):
        load_config(None, ["loss.pearson_weight=-1"])
