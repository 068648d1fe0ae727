"""Trainer: a short real run writes loadable checkpoints, resume is exact, user mistakes are one line."""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open

from exda.commands import train as train_command
from exda.data.io import save_image
from exda.engine.checkpoint import load_training_state
from exda.engine.config import Config, DataConfig, PatchStage, config_from_dict, load_config
from exda.engine.distributed import DistContext
from exda.engine.losses import RestorationLoss, charbonnier_loss, fft_amplitude_loss
from exda.engine.trainer import (
    ResumableSampler,
    Trainer,
    resume_mismatches,
    stage_at,
    train,
    training_precision,
    validation_warning,
    warmup_cosine,
    warmup_stable_decay,
)
from exda.errors import UserError
from exda.inference.checkpoint_format import file_digest
from exda.inference.loader import load_network

# The tiny runs train in bf16 to cover that path, on any CPU (bf16 is only slow where it is not native).
pytestmark = pytest.mark.filterwarnings("ignore:train.precision bf16 on a CPU")

TINY: dict[str, Any] = {
    "model": {"name": "exda_restormer_test"},
    "data": {
        "layout": "synthetic", "root": None, "degradations": ["noise25", "rain"], "patch_size": 23,
        "batch_size": 2, "num_workers": 0, "length": 6, "val_patch_size": 37, "val_max_items": 2,
    },
    "optim": {"lr": 1e-3, "warmup_iters": 1, "schedule_iters": 4, "grad_clip": 1.0},
    "loss": {"kind": "charbonnier", "fft_weight": 0.1},
    "train": {"iters": 2, "val_every": 2, "ckpt_every": 1, "log_every": 1, "precision": "bf16",
              "ema_decay": 0.9, "seed": 3, "device": "cpu"},
}


def tiny_config(**sections: dict[str, Any]) -> Config:
    raw = {name: {**values, **sections.get(name, {})} for name, values in TINY.items()}
    return config_from_dict(raw)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    train(tiny_config(), run)
    return run


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_where_the_hardware_computes_it(
    native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("exda.engine.trainer.native_bf16", lambda device: native)
    cpu = torch.device("cpu")
    assert training_precision("auto", cpu) == ("bf16" if native else "fp32")
    assert training_precision("fp32", cpu) == "fp32"
    if native:
        assert training_precision("bf16", cpu) == "bf16"
    else:
        with pytest.warns(UserWarning, match="10x slower than fp32"):
            assert training_precision("bf16", cpu) == "bf16"


def test_short_run_writes_complete_checkpoints(short_run: Path) -> None:
    ckpt = short_run / "checkpoints"
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "best.json", "best.safetensors", "last.json", "last.safetensors", "last.state.pt",
        "previous.json", "previous.safetensors", "previous.state.pt",  # step 1, kept until step 2 was complete
    ]
    with safe_open(str(ckpt / "last.safetensors"), framework="pt") as f:
        meta = f.metadata()
        keys = list(f.keys())
    assert meta["format"] == "exda-checkpoint-v1" and meta["model_name"] == "exda_restormer_test"
    assert meta["step"] == "2"
    assert any(k.startswith("model.") for k in keys) and any(k.startswith("ema.") for k in keys)
    log = (short_run / "train.log").read_text()
    losses = [float(x) for x in re.findall(r"step \d+ loss ([0-9.e+-]+)", log)]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    assert load_config(short_run / "config.yaml") == tiny_config()
    assert list((short_run / "tb").glob("events.out.tfevents.*"))


def test_checkpoint_loads_for_inference(short_run: Path) -> None:
    model, info = load_network(short_run / "checkpoints" / "best.safetensors")
    assert info.arch == "exda_restormer_test" and info.ema and info.step == 2
    assert set(info.metrics["per_task"]) == {"noise25", "rain"}
    assert not model.training
    x = torch.rand(1, 3, 37, 31, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    raw, raw_info = load_network(short_run, use_ema=False)  # a run folder resolves to last
    assert not raw_info.ema and raw_info.path.name == "last.safetensors"
    assert not torch.equal(next(raw.parameters()), next(model.parameters()))


@pytest.mark.slow
def test_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    # fp32 and six items of batch two: four steps cross an epoch boundary; the break falls mid-epoch.
    sections = {"train": {"precision": "fp32", "val_every": 0, "ckpt_every": 0}}
    full = tmp_path / "full"
    train(tiny_config(train={**sections["train"], "iters": 4}), full)
    parts = tmp_path / "parts"
    train(tiny_config(**sections), parts)
    halfway = load_training_state(parts)["model"]
    train(tiny_config(train={**sections["train"], "iters": 4}), parts, resume=True)
    assert (parts / "config.resume-2.yaml").is_file()
    a = load_training_state(full / "checkpoints" / "last.safetensors")
    b = load_training_state(parts / "checkpoints" / "last.safetensors")
    assert a["step"] == b["step"] == 4
    assert (a["train_state"]["epoch"], a["train_state"]["position"]) == (b["train_state"]["epoch"], 1)
    for group in ("model", "ema"):
        assert a[group].keys() == b[group].keys()
        for name, tensor in a[group].items():
            torch.testing.assert_close(b[group][name], tensor, rtol=0, atol=1e-6, msg=f"{group}.{name}")
    assert any(not torch.equal(halfway[name], b["model"][name]) for name in halfway)  # it did train on


def test_resume_with_another_architecture_is_a_user_error(short_run: Path) -> None:
    with pytest.raises(UserError, match="holds exda_restormer_test .* the config asks for restormer_test"):
        train(tiny_config(model={"name": "restormer_test"}, train={"iters": 3}), short_run, resume=True)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"data": {"batch_size": 1}}, r"data.batch_size \(checkpoint 2, now 1\)"),
        ({"data": {"degradations": ["rain"]}, "train": {"seed": 4}},
         r"data.degradations \(checkpoint \['noise25', 'rain'\], now \['rain'\]\); train.seed \(checkpoint 3, now 4\)"),
        ({"data": {"length": 8, "patch_size": 21}}, r"data.length \(checkpoint 6, now 8\); data.patch_size"),
        ({"data": {"progressive": [{"iters": 1, "patch_size": 16, "batch_size": 2}]}},
         r"data.progressive \(checkpoint \[\], now \[\{'iters': 1, 'patch_size': 16, 'batch_size': 2\}\]\)"),
    ],
)
def test_resume_with_other_data_or_seed_is_a_user_error(
    short_run: Path, changes: dict[str, dict[str, Any]], message: str
) -> None:
    sections = {name: {**TINY[name], **values} for name, values in changes.items()}
    sections["train"] = {**sections.get("train", TINY["train"]), "iters": 3}
    with pytest.raises(UserError, match=f"resuming exactly needs the same {message}.*start a new run instead"):
        train(tiny_config(**sections), short_run, resume=True)


def test_resume_on_another_number_of_processes_is_a_user_error(short_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(short_run, run)
    state_path = run / "checkpoints" / "last.state.pt"
    state = torch.load(state_path, weights_only=True)
    assert state["world_size"] == 1
    torch.save({**state, "world_size": 2}, state_path)
    record_path = run / "checkpoints" / "last.json"  # as a 2-process run would have recorded it
    record = json.loads(record_path.read_text())
    record["files"][".state.pt"] = file_digest(state_path)
    record_path.write_text(json.dumps(record))
    with pytest.raises(UserError, match=r"same number of processes \(checkpoint 2, now 1\)"):
        train(tiny_config(train={"iters": 3}), run, resume=True)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"layout": "synthetic", "root": None}, None),
        ({"layout": "synthetic", "root": "clean"}, "validation uses the training images"),
        ({"layout": "paired", "root": "pairs"}, "set data.val_root for a held-out set"),
        ({"layout": "paired", "root": "pairs", "val_root": "held_out"}, None),
        ({"layout": "deg3", "root": "promptir"}, "validation uses the layout's test split; best.* is selected"),
        ({"layout": "medical", "root": "amir"}, "report last.* or use a separate data.val_root"),
        ({"layout": "cdd11", "root": "cdd", "val_root": "cdd_val"}, None),
    ],
)
def test_validation_warning_when_not_held_out(data: dict[str, Any], expected: str | None) -> None:
    warning = validation_warning(DataConfig(**data))
    assert warning is None if expected is None else expected in warning


def test_paired_run_logs_the_validation_warning(tmp_path: Path, short_run: Path) -> None:
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        gt = rng.random((29, 27, 3))
        save_image(tmp_path / "pairs" / "target" / f"{name}.png", gt)
        save_image(tmp_path / "pairs" / "input" / f"{name}.png", np.clip(gt + 0.1 * rng.random(gt.shape), 0, 1))
    config = tiny_config(
        data={"layout": "paired", "root": str(tmp_path / "pairs"), "degradations": [], "length": 2},
        train={"iters": 1, "val_every": 1, "precision": "fp32"},
    )
    train(config, tmp_path / "run")
    log = (tmp_path / "run" / "train.log").read_text()
    assert log.count("warning: validation uses the training images; set data.val_root") == 1
    assert "warning" not in (short_run / "train.log").read_text()  # held-out sample photos


def test_resume_without_checkpoint_and_fresh_run_over_one(tmp_path: Path, short_run: Path) -> None:
    with pytest.raises(UserError, match="--resume: no checkpoint"):
        train(tiny_config(), tmp_path / "empty", resume=True)
    with pytest.raises(UserError, match="already holds a checkpoint; pass --resume"):
        train(tiny_config(), short_run)


def test_init_from_fine_tunes_a_checkpoints_weights_with_a_fresh_optimizer(short_run: Path, tmp_path: Path) -> None:
    best = short_run / "checkpoints" / "best.safetensors"
    source, _ = load_network(best)  # its EMA weights
    config = tiny_config(train={"init_from": str(best), "iters": 1, "seed": 5, "val_every": 0})
    trainer = Trainer(config, tmp_path / "unused", torch.device("cpu"), DistContext())
    random_start = {name: tensor.clone() for name, tensor in trainer.model.state_dict().items()}
    trainer.start_from(best)
    for name, tensor in source.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[name], tensor), name
        assert torch.equal(trainer.ema.module.state_dict()[name], tensor), name
    assert any(not torch.equal(random_start[name], tensor) for name, tensor in source.state_dict().items())
    assert trainer.step == 0 and not trainer.optimizer.state

    run = tmp_path / "tuned"
    train(config, run)
    assert load_training_state(run)["step"] == 1
    assert f"initialised from {best} (exda_restormer_test" in (run / "train.log").read_text()
    moved = load_training_state(run)["model"]
    assert any(not torch.equal(moved[name], tensor) for name, tensor in source.state_dict().items())
    # --resume continues the run's own checkpoint and never reads init_from again
    gone = tiny_config(train={"init_from": str(tmp_path / "moved_away.safetensors"), "iters": 2, "seed": 5,
                              "val_every": 0})
    train(gone, run, resume=True)
    assert load_training_state(run)["step"] == 2


@pytest.mark.parametrize(
    ("model", "message"),
    [({"name": "restormer_test"}, "holds exda_restormer_test, not model.name restormer_test"),
     ({"name": "exda_restormer_test", "kwargs": {"value_transform": "off"}},
      "weights do not fit exda_restormer_test as configured .model.kwargs.: Error.*Unexpected key")],
)
def test_init_from_another_network_is_a_user_error(
    short_run: Path, tmp_path: Path, model: dict[str, Any], message: str
) -> None:
    config = tiny_config(model=model, train={"init_from": str(short_run)})  # a run folder: its last
    with pytest.raises(UserError, match=message):
        train(config, tmp_path / "run")


def test_cli_trains_and_resumes(tmp_path: Path) -> None:
    preset = tmp_path / "preset.yaml"
    preset.write_text(
        "model:\n  name: exda_restormer_test\ndata:\n  degradations: [noise15]\n  patch_size: 16\n"
        "  batch_size: 2\n  num_workers: 0\n  length: 4\ntrain:\n  iters: 1\n  val_every: 0\n  device: cpu\n"
    )
    parser = argparse.ArgumentParser()
    train_command.add_arguments(parser)
    out = tmp_path / "run"
    assert train_command.run(parser.parse_args(["--config", str(preset), "--out", str(out)])) == 0
    assert train_command.run(parser.parse_args(
        ["--config", str(preset), "--out", str(out), "--resume", "--set", "train.iters=2"])) == 0
    assert load_training_state(out)["step"] == 2
    with pytest.raises(UserError, match="config 'no_such_preset' not found"):
        train_command.run(parser.parse_args(["--config", "no_such_preset"]))
    with pytest.raises(UserError, match="--resume needs --out"):
        train_command.run(parser.parse_args(["--config", str(preset), "--resume"]))


# Three stages of two steps on six items; the last stage runs on past their sum (6) to train.iters.
STAGES = [{"iters": 2, "patch_size": 16, "batch_size": 2}, {"iters": 2, "patch_size": 23, "batch_size": 3},
          {"iters": 2, "patch_size": 31, "batch_size": 1}]
PROGRESSIVE_TRAIN = {"iters": 7, "precision": "fp32", "val_every": 0, "ckpt_every": 0}


class RecordingTrainer(Trainer):
    """A Trainer that notes the shape of the input batch it trains each step on."""

    def _train_step(self, batch: dict[str, Any]) -> float:
        self.shapes.append(tuple(batch["lq"].shape))
        return super()._train_step(batch)


def test_stage_is_a_function_of_the_step() -> None:
    stages = [PatchStage(**stage) for stage in STAGES]
    assert [stage_at(stages, step) for step in range(9)] == [0, 0, 1, 1, 2, 2, 2, 2, 2]
    assert stage_at(stages[:1], 10**6) == 0


def test_progressive_stages_change_patch_and_batch(tmp_path: Path) -> None:
    config = tiny_config(data={"progressive": STAGES}, train=PROGRESSIVE_TRAIN)
    trainer = RecordingTrainer(config, tmp_path / "run", torch.device("cpu"), DistContext())
    trainer.shapes = []
    trainer.fit()
    assert trainer.shapes == [(2, 3, 16, 16)] * 2 + [(3, 3, 23, 23)] * 2 + [(1, 3, 31, 31)] * 3
    # Each stage starts a new epoch: 2 of 3 batches in epoch 0, 2 of 2 in epoch 1, 3 of 6 in epoch 2.
    assert (trainer.stage, trainer.epoch, trainer.position) == (2, 2, 3)
    log = (tmp_path / "run" / "train.log").read_text()
    assert "1 process(es) x batch 2, patch 16 on cpu" in log
    switches = re.findall(r"step \d+: patch \d+, batch \d+", log)
    assert switches == ["step 2: patch 23, batch 3", "step 4: patch 31, batch 1"]


@pytest.mark.slow
@pytest.mark.parametrize("stop", [3, 4])  # inside the second stage, and on the boundary to the third
def test_resume_across_stages_equals_uninterrupted_run(tmp_path: Path, stop: int) -> None:
    data, optim = {"progressive": STAGES}, {"schedule_iters": 7}  # one schedule for the whole run
    full, parts = tmp_path / "full", tmp_path / "parts"
    train(tiny_config(data=data, optim=optim, train=PROGRESSIVE_TRAIN), full)
    train(tiny_config(data=data, optim=optim, train={**PROGRESSIVE_TRAIN, "iters": stop}), parts)
    train(tiny_config(data=data, optim=optim, train=PROGRESSIVE_TRAIN), parts, resume=True)
    a = load_training_state(full / "checkpoints" / "last.safetensors")
    b = load_training_state(parts / "checkpoints" / "last.safetensors")
    assert a["step"] == b["step"] == 7
    assert (a["train_state"]["epoch"], a["train_state"]["position"]) == (b["train_state"]["epoch"], 3)
    for group in ("model", "ema"):
        for name, tensor in a[group].items():
            torch.testing.assert_close(b[group][name], tensor, rtol=0, atol=1e-6, msg=f"{group}.{name}")
    assert re.findall(r"step \d+: patch \d+", (parts / "train.log").read_text()) == [
        "step 2: patch 23", "step 4: patch 31"
    ]


def test_stage_batch_larger_than_the_data_is_a_user_error(tmp_path: Path) -> None:
    stages = [STAGES[0], {"iters": 1, "patch_size": 16, "batch_size": 7}]
    with pytest.raises(UserError, match="not one full batch of 7 .*; lower the data.progressive batch sizes"):
        train(tiny_config(data={"progressive": stages}), tmp_path / "run")


@pytest.mark.slow
def test_channels_last_is_a_memory_layout_not_other_maths(tmp_path: Path) -> None:
    x = torch.rand(1, 3, 37, 31, generator=torch.Generator().manual_seed(0))
    outputs = {}
    for channels_last in (True, False):
        config = tiny_config(train={"channels_last": channels_last, "precision": "fp32"})
        run = tmp_path / f"channels_last_{channels_last}"
        trainer = Trainer(config, run, torch.device("cpu"), DistContext())
        conv = trainer.model.patch_embed.proj.weight
        assert conv.is_contiguous(memory_format=torch.channels_last) is channels_last
        assert conv.is_contiguous() is not channels_last
        trainer.fit()
        for tag in ("best", "last"):
            path = run / "checkpoints" / f"{tag}.safetensors"
            with safe_open(str(path), framework="pt") as f:
                assert all(f.get_tensor(key).is_contiguous() for key in f.keys())
            model, info = load_network(path)
            assert info.step == 2 and info.ema
            with torch.no_grad():
                outputs[channels_last, tag] = model(x)
    for tag in ("best", "last"):
        assert torch.isfinite(outputs[True, tag]).all()
        torch.testing.assert_close(outputs[True, tag], outputs[False, tag], rtol=0, atol=1e-4)


def test_fp16_on_cpu_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="fp16 needs CUDA"):
        train(tiny_config(train={"precision": "fp16"}), tmp_path / "run")


def test_warmup_then_cosine() -> None:
    factor = [warmup_cosine(s, warmup=4, total=14, min_ratio=0.1) for s in range(16)]
    assert factor[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factor[4] == 1.0 and factor[9] == pytest.approx(0.55)
    assert factor[14] == factor[15] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(factor[4:], factor[5:], strict=False))


def test_resumable_sampler_skips_into_the_epoch() -> None:
    dataset = list(range(10))
    sampler = ResumableSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=5)
    sampler.set_epoch(2)
    order = list(sampler)
    sampler.skip = 4
    assert list(sampler) == order[4:] and len(sampler) == 6


def test_losses() -> None:
    g = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 3, 37, 31, generator=g), torch.rand(2, 3, 37, 31, generator=g)
    assert fft_amplitude_loss(target, target) == 0
    assert fft_amplitude_loss(pred, target) > 0
    big = torch.ones(1, 1, 5, 5)
    assert charbonnier_loss(big, 0 * big).item() == pytest.approx(1.0, abs=1e-6)
    l1 = RestorationLoss("l1")(pred, target)
    assert l1 == pytest.approx((pred - target).abs().mean().item())
    with_fft = RestorationLoss("l1", fft_weight=0.1)(pred, target)
    assert with_fft == pytest.approx(l1.item() + 0.1 * fft_amplitude_loss(pred, target).item())


def test_warmup_stable_decay_is_flat_until_its_decay() -> None:
    factor = [warmup_stable_decay(s, warmup=2, total=20, min_ratio=0.1, decay_fraction=0.25) for s in range(22)]
    assert factor[:2] == [0.5, 1.0] and set(factor[2:15]) == {1.0}
    assert factor[15] == 1.0 and factor[20] == factor[21] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(factor[15:20], factor[16:21], strict=True))
    longer = [warmup_stable_decay(s, warmup=2, total=40, min_ratio=0.1, decay_fraction=0.25) for s in range(15)]
    assert longer == factor[:15]  # extending the run before its decay changes nothing already trained


def learning_rates(run: Path) -> list[float]:
    return [float(m[1]) for m in re.finditer(r" lr ([\d.e+-]+) epoch", (run / "train.log").read_text())]


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["cosine", "wsd"])
def test_resume_with_more_iters_stretches_the_schedule(tmp_path: Path, schedule: str) -> None:
    optim = {"schedule_iters": None, "warmup_iters": 1, "schedule": schedule, "decay_fraction": 0.5}
    quick = {"val_every": 0, "ckpt_every": 0, "precision": "fp32"}
    train(tiny_config(optim=optim, train={**quick, "iters": 4}), tmp_path / "short")
    train(tiny_config(optim=optim, train={**quick, "iters": 8}), tmp_path / "short", resume=True)
    train(tiny_config(optim=optim, train={**quick, "iters": 8}), tmp_path / "long")
    stretched, straight = learning_rates(tmp_path / "short"), learning_rates(tmp_path / "long")
    assert stretched[4:] == pytest.approx(straight[4:])  # after the resume: the 8-step schedule
    assert "over 4 steps -> " + schedule + " over 8 steps" in (tmp_path / "short" / "train.log").read_text()


def test_resume_past_a_fixed_schedule_is_refused_in_one_line(tmp_path: Path) -> None:
    quick = {"val_every": 0, "ckpt_every": 0}
    train(tiny_config(train=quick), tmp_path / "run")  # schedule_iters 4
    with pytest.raises(UserError, match=r"set optim.schedule_iters=6 \(or null"):
        train(tiny_config(train={**quick, "iters": 6}), tmp_path / "run", resume=True)


@pytest.mark.slow
def test_time_limit_stops_with_a_complete_checkpoint(tmp_path: Path) -> None:
    config = tiny_config(train={"iters": 1000, "time_limit_minutes": 1e-6, "val_every": 500, "ckpt_every": 0})
    train(config, tmp_path / "run")
    state = load_training_state(tmp_path / "run")
    assert state["step"] == 1
    log = (tmp_path / "run" / "train.log").read_text()
    assert "train.time_limit_minutes=1e-06 reached at step 1/1000" in log and "s/step data" in log
    (record,) = [json.loads(line) for line in (tmp_path / "run" / "validation.jsonl").read_text().splitlines()]
    assert record["step"] == 1 and record["train_hours"] > 0 and set(record["per_task"]) == {"noise25", "rain"}
    assert state["train_state"]["train_seconds"] == pytest.approx(record["train_hours"] * 3600, rel=0.5)


def test_a_change_of_the_task_mixture_is_not_an_exact_resume() -> None:
    config = tiny_config()
    saved = config.to_dict()
    assert resume_mismatches(saved, config) == []
    saved["data"]["task_repeats"] = {"rain": 3}  # more items, so another order: not the run it was
    assert resume_mismatches(saved, config) == ["data.task_repeats (checkpoint {'rain': 3}, now {})"]


@pytest.mark.slow
def test_inexact_resume_continues_with_another_batch(tmp_path: Path) -> None:
    quick = {"val_every": 0, "ckpt_every": 0, "iters": 4}
    train(tiny_config(train={**quick, "iters": 2}, optim={"schedule_iters": 4}), tmp_path / "run")
    bigger = tiny_config(data={"batch_size": 3}, optim={"schedule_iters": 4}, train=quick)
    with pytest.raises(UserError, match="train.resume_exact=false"):
        train(bigger, tmp_path / "run", resume=True)
    inexact = tiny_config(data={"batch_size": 3}, optim={"schedule_iters": 4}, train={**quick, "resume_exact": False})
    train(inexact, tmp_path / "run", resume=True)
    state = load_training_state(tmp_path / "run")
    assert state["step"] == 4 and state["train_state"]["epoch"] == 1 and state["train_state"]["position"] == 2
    assert "new data order (train.resume_exact=false): data.batch_size (checkpoint 2, now 3)" in (
        tmp_path / "run" / "train.log").read_text()


def test_keep_steps_keeps_the_ema_weights_at_those_steps(tmp_path: Path) -> None:
    quick = {"val_every": 0, "ckpt_every": 0, "ema_decay": 0.5}
    train(tiny_config(train={**quick, "iters": 3, "keep_steps": [2]}, optim={"schedule_iters": 3}), tmp_path / "a")
    train(tiny_config(train={**quick, "iters": 2}, optim={"schedule_iters": 3}), tmp_path / "b")
    kept = tmp_path / "a" / "checkpoints" / "step_2.safetensors"
    assert sorted(p.name for p in kept.parent.glob("step_*")) == ["step_2.json", "step_2.safetensors"]
    net, info = load_network(kept)
    assert info.step == 2 and not info.ema  # the EMA is the kept model itself
    ema_at_2, _ = load_network(tmp_path / "b")  # the same run stopped at step 2: its EMA
    for a, b in zip(net.state_dict().values(), ema_at_2.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_val_seed_fixes_the_validation_set_across_training_seeds(tmp_path: Path) -> None:
    def val_items(seed: int, val_seed: int | None) -> list[torch.Tensor]:
        config = tiny_config(train={"seed": seed}, data={"val_seed": val_seed})
        trainer = Trainer(config, tmp_path / f"{seed}_{val_seed}", torch.device("cpu"), DistContext())
        return [trainer.val_set[i]["lq"] for i in range(len(trainer.val_set))]

    fixed = [val_items(seed, 0) for seed in (0, 1)]
    assert all(torch.equal(a, b) for a, b in zip(*fixed, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(val_items(1, None), fixed[0], strict=True))
