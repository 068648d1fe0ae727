"""AirNet and AMIR: the pure-PyTorch deformable convolution against a direct computation, exact counts,
the official key mappings against the recorded official key lists, the training losses, ExDA in AMIR."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import exda
from exda.engine.config import config_from_dict
from exda.engine.distributed import DistContext
from exda.engine.trainer import Trainer, train
from exda.inference.loader import load_network
from exda.layers.deform_conv import modulated_deform_conv2d
from exda.models.official import OFFICIAL_MAPPINGS, infer_arch
from exda.models.profile import count_parameters, profile_model

KEYS = Path(__file__).resolve().parents[1] / "assets" / "official_keys"


def direct_deform_conv(x, offset, mask, weight, bias, stride, padding, dilation, deformable_groups):
    """DCN v2 written out pixel by pixel in float64 Python, with mmcv's bilinear rule (each corner
    outside the image counts as zero; a point at or beyond one pixel outside gives zero)."""
    b, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    ho, wo = offset.shape[-2:]
    xs, offs, ms, ws = x.tolist(), offset.tolist(), mask.tolist(), weight.tolist()
    per_group = c // deformable_groups

    def pixel(n, ch, yy, xx):
        return xs[n][ch][yy][xx] if 0 <= yy < h and 0 <= xx < w else 0.0

    def sample(n, ch, y, x_):
        if not (-1 < y < h and -1 < x_ < w):
            return 0.0
        y0, x0 = math.floor(y), math.floor(x_)
        ly, lx = y - y0, x_ - x0
        return ((1 - ly) * (1 - lx) * pixel(n, ch, y0, x0) + (1 - ly) * lx * pixel(n, ch, y0, x0 + 1)
                + ly * (1 - lx) * pixel(n, ch, y0 + 1, x0) + ly * lx * pixel(n, ch, y0 + 1, x0 + 1))

    out = torch.zeros(b, o, ho, wo, dtype=torch.float64)
    for n in range(b):
        for i in range(ho):
            for j in range(wo):
                cols = []
                for ch in range(c):
                    g = ch // per_group
                    for ki in range(kh):
                        for kj in range(kw):
                            tap = ki * kw + kj
                            dy = offs[n][2 * (g * kh * kw + tap)][i][j]
                            dx = offs[n][2 * (g * kh * kw + tap) + 1][i][j]
                            y = i * stride - padding + ki * dilation + dy
                            x_ = j * stride - padding + kj * dilation + dx
                            cols.append(sample(n, ch, y, x_) * ms[n][g * kh * kw + tap][i][j])
                for oc in range(o):
                    flat = [v for row in ws[oc] for line in row for v in line]
                    out[n, oc, i, j] = sum(a * v for a, v in zip(flat, cols, strict=True)) + bias[oc].item()
    return out


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 1, 1, 1), (2, 2, 2, 2)])
def test_deform_conv_equals_direct_computation(stride, padding, dilation, groups):
    gen = torch.Generator().manual_seed(stride)
    b, c, o, h, w, k = 2, 4, 3, 7, 6, 3
    x = torch.rand(b, c, h, w, generator=gen, dtype=torch.float64)
    ho = (h + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    wo = (w + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    # offsets of up to +-4 pixels: taps land between pixels, on the border and well outside the image
    offset = 8 * torch.rand(b, 2 * groups * k * k, ho, wo, generator=gen, dtype=torch.float64) - 4
    mask = torch.rand(b, groups * k * k, ho, wo, generator=gen, dtype=torch.float64)
    weight = torch.randn(o, c, k, k, generator=gen, dtype=torch.float64)
    bias = torch.randn(o, generator=gen, dtype=torch.float64)
    ours = modulated_deform_conv2d(x, offset, mask, weight, bias, stride, padding, dilation, 1, groups)
    direct = direct_deform_conv(x, offset, mask, weight, bias, stride, padding, dilation, groups)
    assert (ours - direct).abs().max().item() <= 1e-12


def test_deform_conv_without_offsets_is_a_convolution():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 9, 8, generator=gen, dtype=torch.float64)
    weight = torch.randn(4, 3, 3, 3, generator=gen, dtype=torch.float64)  # 2 convolution groups
    offset, mask = torch.zeros(2, 18, 5, 4, dtype=torch.float64), torch.ones(2, 9, 5, 4, dtype=torch.float64)
    ours = modulated_deform_conv2d(x, offset, mask, weight, None, 2, 1, 1, 2, 1)
    assert torch.allclose(ours, F.conv2d(x, weight, None, 2, 1, 1, 2), atol=1e-12)


def test_deform_conv_gradients_match_finite_differences():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(1, 1, 3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    offset = (3 * torch.rand(1, 18, 3, 4, generator=gen, dtype=torch.float64) - 1.5).requires_grad_()
    mask = torch.rand(1, 9, 3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 1, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    inputs = (x, offset, mask, weight)
    assert torch.autograd.gradcheck(lambda *t: modulated_deform_conv2d(*t, None, 1, 1), inputs, fast_mode=True)


def test_exact_official_parameter_counts():
    with torch.device("meta"):
        airnet = exda.create_model("airnet")
        assert count_parameters(airnet) == 8_930_313
        assert count_parameters(airnet.encoder.key) == 1_319_936
        assert not any(p.requires_grad for p in airnet.encoder.key.parameters())
        amir = exda.create_model("amir")
        assert count_parameters(amir) == 23_540_498
        assert amir.in_channels == 1  # the official training script's configuration


@pytest.mark.parametrize("arch", ["airnet", "amir"])
def test_official_key_list_maps_onto_ours(arch):
    record = json.loads((KEYS / f"{arch}.json").read_text())
    official = {key: torch.empty(shape, device="meta") for key, shape in record["keys"].items()}
    mapped = OFFICIAL_MAPPINGS[arch](official)
    with torch.device("meta"):
        ours = exda.create_model(arch).state_dict()
    assert sorted(mapped) == sorted(ours)
    wrong = [k for k, t in mapped.items() if t.shape != ours[k].shape]
    assert not wrong, wrong[:5]
    assert infer_arch(official) == arch  # load_pretrained recognises the official file without --arch


def test_official_configs_follow_the_file():
    """AirNet's queue length is batch_size * 256 of the run that saved it; AMIR's channels follow the file."""
    from exda.models.official import OFFICIAL_CONFIGS

    denoise = {"E.E.queue": torch.empty(256, 3 * 256, device="meta"), "E.E.queue_ptr": torch.empty(1)}
    assert OFFICIAL_CONFIGS["airnet"](denoise) == {"queue_size": 768}
    assert OFFICIAL_CONFIGS["airnet"]({"encoder.queue": torch.empty(16, 32)}) == {"queue_size": 32}  # exda names
    assert OFFICIAL_CONFIGS["amir"]({"patch_embed.proj.weight": torch.empty(42, 1, 3, 3)}) == {"in_channels": 1}


def test_airnet_contrastive_loss_moves_key_encoder_and_queue():
    torch.manual_seed(0)
    model = exda.create_model("airnet_test").train()
    key_before = [p.clone() for p in model.encoder.key.parameters()]
    restored, loss = model.restore_with_auxiliary_loss(torch.rand(3, 3, 20, 18))
    assert restored.shape == (3, 3, 20, 18)
    assert loss.item() > 0 and model.encoder.queue_ptr.item() == 3
    assert torch.allclose(model.encoder.queue.norm(dim=0), torch.ones(32))  # keys are unit vectors
    loss.backward()
    assert model.encoder.query.project[0].weight.grad.abs().sum() > 0  # only the loss reaches the projection
    assert any(not torch.equal(a, b) for a, b in zip(key_before, model.encoder.key.parameters(), strict=True))
    for _ in range(11):  # 3 keys a step into a queue of 32: the pointer wraps around
        model.restore_with_auxiliary_loss(torch.rand(3, 3, 8, 8))
    assert model.encoder.queue_ptr.item() == 36 % 32


def test_amir_balance_loss_reaches_the_gates_and_noise():
    torch.manual_seed(0)
    model = exda.create_model("amir_test").train()
    restored, balance = model.restore_with_auxiliary_loss(torch.rand(2, 1, 24, 16))
    balance.backward()
    moe = model.encoder_routes[0].moe
    assert balance.item() > 0 and moe.w_gate.grad.abs().sum() > 0 and moe.w_noise.grad.abs().sum() > 0


@pytest.mark.parametrize("size", [(5, 7), (17, 9), (24, 40)])
def test_amir_any_size_and_eval_is_deterministic(size):
    model = exda.create_model("exda_amir_test").eval()
    x = torch.rand(1, 1, *size)
    with torch.no_grad():
        y = model(x)
        assert y.shape == x.shape and torch.equal(y, model(x))


def test_exda_amir_overhead_and_primitives():
    model = exda.create_model("exda_amir_test")
    attn = model.encoders[0][0].attn
    assert attn.value.kind == "dwconv_gelu" and attn.token is not None and attn.token.kind == "row"
    base_params, base_flops = profile_model("amir_test", size=(64, 64))
    params, flops = profile_model("exda_amir_test", size=(64, 64))
    assert 0 < params / base_params - 1 <= 0.02 and 0 < flops / base_flops - 1 <= 0.05
    plain = exda.create_model("exda_amir_test", value_transform=False, global_token=False)
    assert count_parameters(plain) == base_params


def _tiny_run(name: str, channels: int, **model_kwargs) -> dict:
    degradations = ["mri", "ct"] if channels == 1 else ["noise25", "rain"]
    return config_from_dict({
        "model": {"name": name, "kwargs": {"in_channels": channels, **model_kwargs}},
        "data": {"layout": "synthetic", "root": None, "degradations": degradations, "in_channels": channels,
                 "patch_size": 24, "batch_size": 2, "num_workers": 0, "length": 4, "val_patch_size": 32,
                 "val_max_items": 1},
        "optim": {"lr": 1e-3, "warmup_iters": 1, "schedule_iters": 2},
        "train": {"iters": 1, "val_every": 0, "ckpt_every": 1, "log_every": 1, "precision": "fp32",
                  "ema_decay": 0.0, "seed": 1, "device": "cpu"},
    })


def test_training_runs_airnet_contrastive_loss_and_restores(tmp_path):
    run = tmp_path / "run"
    train(_tiny_run("airnet_test", 3), run)
    model, info = load_network(run)
    assert info.arch == "airnet_test"
    assert model.encoder.queue_ptr.item() == 2  # one step of batch 2 enqueued its keys: the loss ran
    with torch.no_grad():
        assert model(torch.rand(1, 3, 19, 23)).shape == (1, 3, 19, 23)


def test_trainer_adds_the_weighted_auxiliary_loss(tmp_path):
    losses = []
    for weight in (0.0, 1000.0):
        trainer = Trainer(_tiny_run("amir_test", 1, auxiliary_loss_weight=weight), tmp_path / str(weight),
                          torch.device("cpu"), DistContext())
        losses.append(trainer._train_step(next(trainer._batches())))
    assert losses[1] > losses[0] + 1e-3  # same data, weights and gating noise; the balance term is added
