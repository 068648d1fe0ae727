"""scripts/run_state.py: a run packed compactly and unpacked resumes where it stopped."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from exda.engine.checkpoint import load_training_state
from exda.engine.config import config_from_dict
from exda.engine.trainer import train
from exda.errors import UserError
from exda.inference.checkpoint_format import checkpoint_problem
from exda.inference.loader import load_network

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "run_state.py"
spec = importlib.util.spec_from_file_location("run_state", SCRIPT)
run_state = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_state)


def config(iters: int, keep_steps: tuple[int, ...] = ()):
    return config_from_dict({
        "model": {"name": "exda_restormer_test"},
        "data": {"layout": "synthetic", "degradations": ["noise25", "rain"], "patch_size": 23, "batch_size": 2,
                 "num_workers": 0, "length": 6, "val_max_items": 0},
        "optim": {"lr": 1e-3, "warmup_iters": 1, "schedule_iters": 4},
        "train": {"iters": iters, "val_every": 0, "ckpt_every": 0, "precision": "fp32", "ema_decay": 0.9,
                  "seed": 3, "device": "cpu", "keep_steps": list(keep_steps)},
    })


def test_packed_state_resumes_the_run(tmp_path: Path) -> None:
    train(config(4), tmp_path / "full")
    train(config(2, keep_steps=(1,)), tmp_path / "run")
    run_state.pack(tmp_path / "run", tmp_path / "state")
    packed = sum(p.stat().st_size for p in (tmp_path / "state").glob("state.*"))
    full_size = sum(p.stat().st_size for p in (tmp_path / "run" / "checkpoints").glob("last.*"))
    assert packed < 0.6 * full_size
    run_state.unpack(tmp_path / "state", tmp_path / "resumed")
    assert (tmp_path / "resumed" / "train.log").is_file()
    kept = [tmp_path / d / "step_1.safetensors" for d in ("run/checkpoints", "state", "resumed/checkpoints")]
    assert kept[1].read_bytes() == kept[2].read_bytes()
    trained, stored = load_file(str(kept[0])), load_file(str(kept[1]))  # kept weights are stored in bf16
    assert all(torch.equal(stored[k], v.to(torch.bfloat16)) for k, v in trained.items())
    packed_state = load_training_state(tmp_path / "resumed")
    original = load_training_state(tmp_path / "run")
    for name, tensor in original["model"].items():  # the weights: within fp8 of their distance from the EMA
        distance = (tensor - original["ema"][name].to(torch.bfloat16).float()).abs().max().item()
        torch.testing.assert_close(packed_state["model"][name], tensor, rtol=0, atol=0.07 * distance + 1e-12)
    for index, slots in original["train_state"]["optimizer"]["state"].items():  # the moments within fp8
        for slot, rtol in (("exp_avg", 0.07), ("exp_avg_sq", 0.13)):  # the second moment's root is stored
            back = packed_state["train_state"]["optimizer"]["state"][index][slot]
            torch.testing.assert_close(back, slots[slot], rtol=rtol, atol=1e-3 * slots[slot].abs().max().item())
    train(config(4), tmp_path / "resumed", resume=True)
    a = load_training_state(tmp_path / "full")
    b = load_training_state(tmp_path / "resumed")
    assert b["step"] == 4 and b["train_state"]["position"] == a["train_state"]["position"]
    for name, tensor in a["model"].items():  # rounded EMA and moments: close, not bit-equal
        torch.testing.assert_close(b["model"][name], tensor, rtol=0, atol=2e-3, msg=name)
    with pytest.raises(UserError, match="already holds checkpoints"):
        run_state.unpack(tmp_path / "state", tmp_path / "resumed")


def test_a_state_packed_at_the_same_step_is_left_as_it_is(tmp_path: Path) -> None:
    train(config(2), tmp_path / "run")
    run_state.pack(tmp_path / "run", tmp_path / "state")
    run_state.unpack(tmp_path / "state", tmp_path / "resumed")  # a new session, before any step
    before = {p.name: p.read_bytes() for p in (tmp_path / "state").iterdir()}
    run_state.pack(tmp_path / "resumed", tmp_path / "state")
    assert {p.name: p.read_bytes() for p in (tmp_path / "state").iterdir()} == before
    train(config(3), tmp_path / "resumed", resume=True)  # a step later it is packed again
    run_state.pack(tmp_path / "resumed", tmp_path / "state")
    assert '"step": 3' in (tmp_path / "state" / "state.json").read_text()


def test_byte_planes_and_fp8_round_trip() -> None:
    generator = torch.Generator().manual_seed(0)
    tensors = [torch.randn(3, 5, generator=generator), torch.randn(7, generator=generator)]
    back = run_state.from_byte_planes(run_state.byte_planes(tensors, torch.float32), torch.float32, [[3, 5], [7]])
    assert all(torch.equal(a, b) for a, b in zip(tensors, back, strict=True))
    values = torch.randn(300, generator=generator) * torch.logspace(-6, 0, 300)  # a wide range, as moments have
    codes, scales = run_state.to_fp8(values)
    assert codes.dtype == torch.uint8 and codes.numel() == 384 and scales.numel() == 3
    restored = run_state.from_fp8(codes, scales, 300)
    torch.testing.assert_close(restored, values, rtol=0.07, atol=scales.max().item() * 2**-9)


def test_a_finished_run_keeps_its_logs_and_kept_checkpoints_only(tmp_path: Path) -> None:
    train(config(2, keep_steps=(2,)), tmp_path / "run")
    run_state.pack(tmp_path / "run", tmp_path / "state")
    run_state.pack(tmp_path / "run", tmp_path / "state", final=True)
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [
        "config.yaml", "state.json", "step_2.json", "step_2.safetensors", "train.log"]
    kept, info = load_network(tmp_path / "state" / "step_2.safetensors")  # rounded to bf16, still an exda checkpoint
    assert info.step == 2 and checkpoint_problem(tmp_path / "state" / "step_2.safetensors") is None
    original, _ = load_network(tmp_path / "run" / "checkpoints" / "step_2.safetensors")
    for (name, rounded), exact in zip(kept.state_dict().items(), original.state_dict().values(), strict=True):
        assert torch.allclose(rounded, exact, rtol=1e-2, atol=1e-6), name
    with pytest.raises(UserError, match="finished at step 2"):
        run_state.unpack(tmp_path / "state", tmp_path / "again")
    stopped_early = config(2)
    stopped_early.train.time_limit_minutes = 1e-6  # stops after step 1 of 2
    train(stopped_early, tmp_path / "short")
    with pytest.raises(UserError, match="not finished"):
        run_state.pack(tmp_path / "short", tmp_path / "short_state", final=True)
