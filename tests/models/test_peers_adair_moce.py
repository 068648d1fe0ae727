"""AdaIR and MoCE-IR: exact counts, the official key mappings against the recorded official key lists, the
frequency split and the expert routing against direct computations, the balance loss, ExDA in both, and a
training run that restores. Output equality with the official code is benchmarks/official_equivalence.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import exda
from exda.engine.config import config_from_dict
from exda.engine.trainer import train
from exda.inference.loader import load_network
from exda.layers.moe import squared_cv
from exda.models.adair import FrequencyModulation
from exda.models.official import OFFICIAL_MAPPINGS, infer_arch
from exda.models.profile import count_parameters, profile_model

KEYS = Path(__file__).resolve().parents[1] / "assets" / "official_keys"


def test_exact_official_parameter_counts():
    with torch.device("meta"):
        assert count_parameters(exda.create_model("adair")) == 28_784_824
        assert count_parameters(exda.create_model("moce_ir_s")) == 11_477_752
        assert count_parameters(exda.create_model("moce_ir")) == 25_353_796


@pytest.mark.parametrize("arch", ["adair", "moce_ir_s", "moce_ir"])
def test_official_key_list_maps_onto_ours(arch):
    record = json.loads((KEYS / f"{arch}.json").read_text())
    official = {key: torch.empty(shape, device="meta") for key, shape in record["keys"].items()}
    mapped = OFFICIAL_MAPPINGS[arch](official)
    with torch.device("meta"):
        ours = exda.create_model(arch).state_dict()
    assert sorted(mapped) == sorted(ours) and len(mapped) == len(official)
    wrong = [k for k, t in mapped.items() if t.shape != ours[k].shape]
    assert not wrong, wrong[:5]
    assert infer_arch(official) == arch  # load_pretrained recognises the official file without --arch


def test_adair_frozen_parameters_are_the_untrainable_ones():
    """The AFLB's never-called convs and its band-size predictor (reached only through an integer cast)."""
    model = exda.create_model("adair_test")
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.split(".")[2] in ("unused_conv", "unused_score_conv", "rate_conv") for n in frozen)


def test_adair_frequency_split_equals_shifted_spectrum_box():
    """The low band is the centred box (fftshift, slice, ifftshift) of the official code; high the rest."""
    torch.manual_seed(0)
    module = FrequencyModulation(dim=16, heads=1).double()
    with torch.no_grad():
        module.rate_conv[-1].weight[0].fill_(0.0)  # row rate sigmoid(0) = 0.5: half-height 3 * 0.5 -> 1
    x = torch.randn(2, 16, 390, 520, dtype=torch.float64)
    x[1] += 1.0  # a different mean, so a different column rate for the second image
    high, low = module.split_bands(x)
    rate = module.rate_conv(x.mean(dim=(-2, -1), keepdim=True)).sigmoid()[:, :, 0, 0]
    for i in range(2):
        h, w = x.shape[-2:]
        hh, hw = int(h // 128 * rate[i, 0]), int(w // 128 * rate[i, 1])
        mask = torch.zeros(h, w, dtype=torch.float64)
        mask[h // 2 - hh:h // 2 + hh, w // 2 - hw:w // 2 + hw] = 1
        spectrum = torch.roll(torch.fft.fft2(x[i], norm="forward"), shifts=(h // 2, w // 2), dims=(-2, -1))
        back = [torch.fft.ifft2(torch.roll(spectrum * m, shifts=(-(h // 2), -(w // 2)), dims=(-2, -1)),
                                norm="forward").abs() for m in (mask, 1 - mask)]
        assert hh > 0  # the box is not empty at this size
        torch.testing.assert_close(low[i], back[0], rtol=0, atol=1e-12)
        torch.testing.assert_close(high[i], back[1], rtol=0, atol=1e-12)


def test_moce_routing_sends_each_image_through_its_gated_experts():
    """Sparse dispatch equals running every expert on every image and weighting by the (top-1) gates."""
    torch.manual_seed(0)
    model = exda.create_model("moce_ir_test", experts=4, top_k=1).double().train()
    adapter = model.decoders[0][0].adapter
    x, shared = torch.randn(6, 32, 9, 7, dtype=torch.float64), torch.randn(6, 32, 9, 7, dtype=torch.float64)
    freq = torch.randn(6, 64, dtype=torch.float64)
    torch.manual_seed(1)
    out, _ = adapter(x, freq, shared)
    torch.manual_seed(1)
    gates, _ = adapter.routing(x, freq)
    assert ((gates > 0).sum(1) == 1).all() and (gates.sum(1) < 1).all()  # top-1, not renormalised
    assert len(set(gates.argmax(1).tolist())) > 1  # several experts in use across the batch
    dense = sum(gates[:, i, None, None, None] * e(x, shared) for i, e in enumerate(adapter.experts))
    torch.testing.assert_close(out, adapter.proj_out(dense), rtol=0, atol=1e-12)


def test_moce_balance_loss_and_deterministic_inference():
    torch.manual_seed(0)
    model = exda.create_model("moce_ir_test", experts=4, top_k=1).train()
    restored, balance = model.restore_with_auxiliary_loss(torch.rand(3, 3, 21, 19))
    assert restored.shape == (3, 3, 21, 19) and balance.item() > 0
    balance.backward()
    assert model.decoders[0][0].adapter.routing.gate.weight.grad.abs().sum() > 0
    model.eval()
    x = torch.rand(1, 3, 13, 22)
    with torch.no_grad():
        assert torch.equal(model(x), model(x)) and model.restore_with_auxiliary_loss(x)[1].item() == 0
    noisy = exda.create_model("moce_ir_test", experts=4, top_k=1, inference_noise=True).eval()
    noisy.load_state_dict(model.state_dict())
    with torch.no_grad():  # the official test-time behaviour: routing noise, so the result varies
        outputs = [noisy(x) for _ in range(8)]
    assert any(not torch.equal(outputs[0], y) for y in outputs[1:])


def test_squared_cv_keeps_each_official_formula():
    x = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    assert squared_cv(x, "variance").item() == pytest.approx((x.var() / (x.mean() ** 2 + 1e-10)).item(), rel=1e-15)
    assert squared_cv(x, "std").item() == pytest.approx(((x.std() / (x.mean() + 1e-8)) ** 2).item(), rel=1e-15)
    half = x.to(torch.bfloat16)  # AMIR's form computes in float32 (its .float()), MoCE-IR's in the input dtype
    assert squared_cv(half, "variance").dtype == torch.float32 and squared_cv(half, "std").dtype == torch.bfloat16
    assert squared_cv(x[:1], "variance").item() == 0
    with pytest.raises(ValueError, match="form"):
        squared_cv(x, "var")


@pytest.mark.parametrize("family", ["adair_test", "moce_ir_test"])
def test_exda_variants_overhead_and_primitives(family):
    model = exda.create_model("exda_" + family)
    attns = [m for m in model.modules() if isinstance(m, exda.layers.TransposedAttention)]
    assert attns and all(a.value.kind == "dwconv_gelu" and a.token is not None for a in attns)
    base_params, base_flops = profile_model(family, size=(64, 64))
    params, flops = profile_model("exda_" + family, size=(64, 64))
    assert 0 < params / base_params - 1 <= 0.03 and 0 < flops / base_flops - 1 <= 0.05
    plain = exda.create_model("exda_" + family, value_transform=False, global_token=False)
    assert count_parameters(plain) == base_params


def test_training_with_balance_loss_then_restore(tmp_path):
    config = config_from_dict({
        "model": {"name": "exda_moce_ir_test"},
        "data": {"layout": "synthetic", "root": None, "degradations": ["noise25", "rain"], "patch_size": 24,
                 "batch_size": 2, "num_workers": 0, "length": 4, "val_patch_size": 32, "val_max_items": 1},
        "optim": {"lr": 1e-3, "warmup_iters": 1, "schedule_iters": 2},
        "train": {"iters": 1, "val_every": 0, "ckpt_every": 1, "log_every": 1, "precision": "fp32",
                  "ema_decay": 0.0, "seed": 1, "device": "cpu"},
    })
    train(config, tmp_path / "run")
    model, info = load_network(tmp_path / "run")
    assert info.arch == "exda_moce_ir_test"
    with torch.no_grad():
        assert model(torch.rand(1, 3, 19, 23)).shape == (1, 3, 19, 23)
