"""Iteration-based training: AdamW, warmup + cosine, EMA, mixed precision, DDP, exact resume.

``train(config, run_dir)`` is the whole job. It writes (rank 0 only) into ``run_dir``:
``config.yaml`` (resolved), ``train.log``, ``validation.jsonl`` (per-task metrics at each validation, with the
step and the run's wall-clock hours), ``tb/`` (TensorBoard) and ``checkpoints/{last,best}.*``.
A run resumed from ``last`` continues exactly as if never interrupted: weights, EMA, optimizer,
scheduler, grad scaler, torch RNG and the data epoch/position are restored, and every training item
is a pure function of (seed, epoch, index); so resuming refuses a change to what fixes the batches
(``RESUME_FIXED_KEYS`` and the number of processes).

Progressive patch training (``data.progressive``, Restormer's recipe): the stage, so the patch and batch
size, is a pure function of the step. At a stage boundary the training data is rebuilt and a new epoch
starts (the rest of the current one is skipped); epochs keep counting, so each stage gets a fresh order.
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from bisect import bisect_right
from collections.abc import Iterator
from functools import partial
from itertools import accumulate
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LambdaLR
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from exda.amp import autocast
from exda.data import build_dataset, collate_restoration
from exda.engine.checkpoint import (
    latest_valid_checkpoint,
    load_training_state,
    remove_stale_temp_files,
    save_checkpoint,
)
from exda.engine.config import Config, DataConfig, OptimConfig, PatchStage, save_config
from exda.engine.distributed import (
    DistContext,
    context_from_env,
    distributed_session,
    mean_across_ranks,
    resolve_device,
)
from exda.engine.evaluate import AVERAGE_ROW, evaluate_model
from exda.engine.losses import build_loss
from exda.errors import UserError
from exda.inference.checkpoint_format import load_state_into
from exda.inference.fast import native_bf16
from exda.inference.loader import load_network
from exda.layers.global_token import token_kwargs
from exda.models import create_model, model_traits

CHECKPOINT_DIR = "checkpoints"
VALIDATION_LOG = "validation.jsonl"
SAMPLE_IMAGES = 4
BENCHMARK_LAYOUTS = ("deg3", "deg5", "cdd11", "medical")  # their "val" split is the test folders
# What fixes the sequence of training batches: resuming with another value would not continue the run.
RESUME_FIXED_KEYS = (
    "data.batch_size", "data.length", "data.layout", "data.root", "data.degradations", "data.task_repeats",
    "data.patch_size", "data.progressive", "train.seed",
)


def warmup_cosine(step: int, *, warmup: int, total: int, min_ratio: float) -> float:
    """LR factor: linear warmup over ``warmup`` steps, then cosine from 1 to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_stable_decay(step: int, *, warmup: int, total: int, min_ratio: float, decay_fraction: float) -> float:
    """LR factor: linear warmup, constant 1, then cosine to ``min_ratio`` over the last ``decay_fraction``
    of ``total`` steps. Raising ``total`` before the decay has begun changes nothing already trained."""
    if step < warmup:
        return (step + 1) / warmup
    decay = max(1, round(decay_fraction * total))
    start = max(warmup, total - decay)
    if step < start:
        return 1.0
    progress = min(1.0, (step - start) / max(1, total - start))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_schedule(optim: OptimConfig, iters: int) -> partial:
    """The learning-rate factor of ``optim`` as a function of the step, for a run of ``iters`` steps."""
    total = optim.schedule_iters or iters
    common = dict(warmup=optim.warmup_iters, total=total, min_ratio=optim.min_lr / optim.lr)
    if optim.schedule == "wsd":
        return partial(warmup_stable_decay, decay_fraction=optim.decay_fraction, **common)
    return partial(warmup_cosine, **common)


def stage_at(stages: list[PatchStage], step: int) -> int:
    """Index of the stage that trains step ``step`` (0-based); the last stage runs on to the end."""
    return bisect_right(list(accumulate(stage.iters for stage in stages[:-1])), step)


def validation_warning(data: DataConfig) -> str | None:
    """One line when validation is not held out (so ``best`` is picked on seen or test images)."""
    if data.val_root is not None:
        return None
    layout = data.val_layout or data.layout
    if layout in BENCHMARK_LAYOUTS:
        return ("warning: validation uses the layout's test split; best.* is selected on it, "
                "so report last.* or use a separate data.val_root")
    if layout == "paired" or (layout == "synthetic" and data.root is not None):
        return "warning: validation uses the training images; set data.val_root for a held-out set"
    return None  # synthetic without a root validates on the held-out sample photos


def _same_value(key: str, saved: Any, current: Any) -> bool:
    if saved == current:
        return True
    if key == "data.root" and saved is not None and current is not None:  # same folder, spelled otherwise
        return Path(saved).expanduser().resolve() == Path(current).expanduser().resolve()
    return False


def resume_mismatches(saved_config: dict[str, Any], config: Config) -> list[str]:
    """``key (checkpoint X, now Y)`` for each of RESUME_FIXED_KEYS that differs from the saved config."""
    current = config.to_dict()
    found = []
    for key in RESUME_FIXED_KEYS:
        section, name = key.split(".")
        if name not in saved_config.get(section, {}):
            continue  # not recorded in this checkpoint
        saved, now = saved_config[section][name], current[section][name]
        if not _same_value(key, saved, now):
            found.append(f"{key} (checkpoint {saved!r}, now {now!r})")
    return found


class ResumableSampler(DistributedSampler):
    """A DistributedSampler whose current epoch can start ``skip`` items in, to resume mid-epoch.

    It is used for one process too, so a run on N ranks with batch b sees the same global batches as
    one rank with batch N*b (rank r takes every N-th index of the same shuffled order).
    """

    skip: int = 0

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.skip :])

    def __len__(self) -> int:
        return max(0, super().__len__() - self.skip)


class TrainingForward(nn.Module):
    """The forward pass of a training step (what DDP wraps): the restored batch and the model's own weighted
    loss term, None for a model without one (AirNet's contrastive encoder loss, AMIR's and MoCE-IR's expert
    balance: ``ModelTraits.auxiliary_loss``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.auxiliary_loss = model_traits(model).auxiliary_loss

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.auxiliary_loss:
            return self.model.restore_with_auxiliary_loss(x)
        return self.model(x), None


def training_precision(precision: str, device: torch.device) -> str:
    """``train.precision`` resolved on ``device``: ``auto`` is bf16 where the hardware computes bf16, else
    fp32; an explicit bf16 on a CPU without bf16 units is kept, with a warning (it is ~10x slower there)."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision == "bf16" and device.type == "cpu" and not native_bf16(device):
        warnings.warn("train.precision bf16 on a CPU without AMX or AVX-512 BF16 runs ~10x slower than fp32; "
                      "train.precision: auto picks fp32 here", stacklevel=2)
    return precision


class Trainer:
    """Holds one run's model, optimisation state and data; ``fit()`` trains to ``config.train.iters``."""

    def __init__(self, config: Config, run_dir: str | Path, device: torch.device, ctx: DistContext) -> None:
        self.config, self.run_dir, self.device, self.ctx = config, Path(run_dir), device, ctx
        train, optim = config.train, config.optim
        if train.precision == "fp16" and device.type != "cuda":
            raise UserError("train.precision fp16 needs CUDA; use bf16 (or fp32) on CPU")
        self.precision = training_precision(train.precision, device)
        if device.type == "cpu" and train.threads > 0:
            torch.set_num_threads(train.threads)
        torch.manual_seed(train.seed)  # same initial weights on every rank
        kwargs = {"in_channels": config.data.in_channels, **config.model.kwargs}
        self.model = create_model(config.model.name, **kwargs).to(device)
        self.memory_format = torch.channels_last if train.channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        if (channels := model_traits(self.model).in_channels) != config.data.in_channels:
            raise UserError(
                f"model has {channels} input channels but data.in_channels is {config.data.in_channels}"
            )
        self.train_forward: nn.Module = TrainingForward(self.model)
        if ctx.enabled:  # static_graph lets DDP accept parameters that never get a gradient (PromptIR's unused convs)
            self.train_forward = DistributedDataParallel(
                self.train_forward, device_ids=[device.index] if device.type == "cuda" else None, static_graph=True
            )
        self.ema = (
            AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(train.ema_decay), use_buffers=True)
            if train.ema_decay > 0 else None
        )
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay,
            fused=optim.fused or None,
        )
        self.scheduler = LambdaLR(self.optimizer, lr_schedule(optim, train.iters))
        self.compile_seconds: float | None = None
        if train.compile:
            self.train_forward = torch.compile(self.train_forward)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")
        self.loss_fn = build_loss(config.loss)
        data = config.data
        self.stages = data.progressive or [PatchStage(train.iters, data.patch_size, data.batch_size)]
        self._use_stage(0)
        self.val_set = self._build_val_data()
        self.step, self.epoch, self.position = 0, 0, 0
        self.best_psnr = -math.inf
        self.skipped_steps = 0
        self.writer: SummaryWriter | None = None
        self.log_file: TextIO | None = None
        self.notes: list[str] = []  # said in train.log when fit() starts (e.g. what resuming changed)
        self.seconds = {"data": 0.0, "total": 0.0, "steps": 0}  # since the last report
        self.train_seconds = 0.0  # wall-clock of the whole run so far (validation and saving included)

    # ----- data ---------------------------------------------------------------------------------
    def _use_stage(self, index: int) -> None:
        """Build the training dataset, sampler and loader with stage ``index``'s patch and batch size."""
        self.stage = index
        self.train_set, self.sampler, self.loader = self._build_train_data(self.stages[index])

    def _build_train_data(self, stage: PatchStage) -> tuple[Dataset, ResumableSampler, DataLoader]:
        data = self.config.data
        dataset = build_dataset(
            data.layout, data.root, "train", degradations=tuple(data.degradations),
            patch_size=stage.patch_size, augment=data.augment, in_channels=data.in_channels,
            seed=self.config.train.seed, length=data.length, strength=data.strength,
            task_repeats=data.task_repeats, scene_colour=data.scene_colour,
        )
        sampler = ResumableSampler(
            dataset, num_replicas=self.ctx.world_size, rank=self.ctx.rank, shuffle=True,
            seed=self.config.train.seed, drop_last=True,
        )
        loader = DataLoader(
            dataset, batch_size=stage.batch_size, sampler=sampler, num_workers=data.num_workers,
            collate_fn=collate_restoration, drop_last=True, pin_memory=self.device.type == "cuda",
        )
        largest = max(s.batch_size for s in self.stages)  # checked up front, not when a late stage starts
        if len(sampler) < largest:
            key = "the data.progressive batch sizes" if data.progressive else "data.batch_size"
            raise UserError(
                f"the training set has {len(dataset)} items: not one full batch of {largest} "
                f"per process on {self.ctx.world_size} process(es); lower {key}"
            )
        return dataset, sampler, loader

    def _build_val_data(self) -> Dataset | None:
        data, train = self.config.data, self.config.train
        if train.val_every == 0 or data.val_max_items == 0 or not self.ctx.is_main:
            return None
        degradations = data.degradations if data.val_degradations is None else data.val_degradations
        build = partial(
            build_dataset, data.val_layout or data.layout, data.val_root or data.root, "val",
            degradations=tuple(degradations), patch_size=data.val_patch_size, in_channels=data.in_channels,
            seed=train.seed if data.val_seed is None else data.val_seed, strength=data.strength,
        )
        dataset = build()
        # A shorter length takes items evenly spaced over the set, so every task stays in the subset.
        return build(length=data.val_max_items) if len(dataset) > data.val_max_items else dataset

    def _batches(self) -> Iterator[dict[str, Any]]:
        """Endless batches of the current stage, epoch after epoch, from the saved epoch and position."""
        while True:
            self.sampler.set_epoch(self.epoch)
            self.train_set.set_epoch(self.epoch)
            self.sampler.skip = self.position * self.loader.batch_size
            for batch in self.loader:
                self.position += 1
                yield batch
            self.epoch, self.position = self.epoch + 1, 0

    # ----- state --------------------------------------------------------------------------------
    def _train_state(self) -> dict[str, Any]:
        # Only torch RNG is consumed during training (data items are pure functions of seed/epoch/index).
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "epoch": self.epoch,
            "position": self.position,
            "best_psnr": self.best_psnr,
            "ema_n_averaged": int(self.ema.n_averaged) if self.ema is not None else 0,
            "world_size": self.ctx.world_size,
            "train_seconds": self.train_seconds,
        }

    def resume(self, checkpoint: Path) -> None:
        """Restore everything from a ``last`` checkpoint; another architecture is a UserError."""
        saved = load_training_state(checkpoint)
        # Compare through JSON, the form the checkpoint stores (tuples become lists).
        # Checkpoints record the token options too (exda.layers.global_token.token_kwargs).
        wanted_kwargs = {**token_kwargs(self.model), **self.model.model_kwargs}
        wanted = json.loads(json.dumps({"name": self.model.model_name, "kwargs": wanted_kwargs}))
        found = {"name": saved["model_name"], "kwargs": saved["model_kwargs"]}
        if found != wanted:
            raise UserError(
                f"checkpoint {checkpoint} holds {found['name']} {found['kwargs']} but the config asks for "
                f"{wanted['name']} {wanted['kwargs']}"
            )
        state = saved["train_state"]
        mismatches = resume_mismatches(saved["config"], self.config)
        saved_world = state.get("world_size", self.ctx.world_size)  # absent in older checkpoints
        if saved_world != self.ctx.world_size:
            mismatches.append(f"number of processes (checkpoint {saved_world}, now {self.ctx.world_size})")
        if mismatches and self.config.train.resume_exact:
            raise UserError(
                f"resuming exactly needs the same {'; '.join(mismatches)}; start a new run instead, or set "
                "train.resume_exact=false to continue the weights, optimizer and schedule with a new data order"
            )
        load_state_into(self.model, saved["model"], checkpoint)
        if self.ema is not None:
            load_state_into(self.ema.module, saved["ema"] or saved["model"], checkpoint)
            self.ema.n_averaged.fill_(state["ema_n_averaged"] if saved["ema"] else 0)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self._follow_schedule(saved["config"], saved["step"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.step, self.epoch, self.position = saved["step"], state["epoch"], state["position"]
        if mismatches:  # train.resume_exact is off: the data order starts afresh in the next epoch
            self.epoch, self.position = self.epoch + 1, 0
            self.notes.append(f"resumed with a new data order (train.resume_exact=false): {'; '.join(mismatches)}")
        self.best_psnr = state["best_psnr"]
        self.train_seconds = state.get("train_seconds", 0.0)  # absent in older checkpoints
        # The saved epoch/position belong to the stage of the last step trained; fit() switches on from it.
        if (stage := stage_at(self.stages, self.step - 1)) != self.stage:
            self._use_stage(stage)

    def start_from(self, checkpoint: str | Path) -> None:
        """Copy a checkpoint's weights (EMA ones where it has them) into the network and its EMA: a fresh run
        fine-tunes them (``train.init_from``). The checkpoint must hold the configured network, parameter for
        parameter; optimizer, schedule and step stay fresh."""
        source, info = load_network(checkpoint)
        name = self.config.model.name
        if info.arch != name:
            raise UserError(f"train.init_from {info.path} holds {info.arch}, not model.name {name}")
        try:
            self.model.load_state_dict(source.state_dict())
        except RuntimeError as err:  # missing, unexpected or differently shaped parameters
            detail = " ".join(str(err).split())
            raise UserError(f"train.init_from {info.path}: its weights do not fit {name} as configured "
                            f"(model.kwargs): {detail[:300]}") from err
        if self.ema is not None:
            self.ema.module.load_state_dict(self.model.state_dict())
        self.notes.append(f"initialised from {info.path} ({info.summary()}, {info.container} weights)")

    def _follow_schedule(self, saved_config: dict[str, Any], step: int) -> None:
        """Set the learning rates from this config's schedule at the resumed step (the checkpoint holds the
        rates of its own schedule); refuse a longer run whose fixed ``optim.schedule_iters`` it would outlive."""
        optim, iters = self.config.optim, self.config.train.iters
        saved_iters = saved_config.get("train", {}).get("iters", iters)
        if optim.schedule_iters is not None and iters > max(optim.schedule_iters, saved_iters):
            raise UserError(
                f"train.iters={iters} runs past optim.schedule_iters={optim.schedule_iters}: the last "
                f"{iters - optim.schedule_iters} steps would stay at optim.min_lr; set "
                f"optim.schedule_iters={iters} (or null, to follow train.iters) to stretch the schedule"
            )
        before = self.optimizer.param_groups[0]["lr"]
        fn = self.scheduler.lr_lambdas[0]
        for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs, strict=True):
            group["lr"] = base * fn(self.scheduler.last_epoch)
        self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        saved_optim = saved_config.get("optim", {})
        saved_total = saved_optim.get("schedule_iters") or saved_iters
        total = optim.schedule_iters or iters
        if total != saved_total or optim.schedule != saved_optim.get("schedule", "cosine"):
            self.notes.append(
                f"schedule {saved_optim.get('schedule', 'cosine')} over {saved_total} steps -> "
                f"{optim.schedule} over {total} steps: lr at step {step} {before:.3e} -> "
                f"{self.optimizer.param_groups[0]['lr']:.3e}"
            )

    def _save(self, tag: str, metrics: dict[str, Any], with_state: bool, weights_only: bool = False) -> None:
        """Write a checkpoint; ``last`` keeps the one it replaces as ``previous`` until it is complete.
        ``weights_only`` writes just the inference weights (the EMA where there is one) as the model."""
        model, ema = (self.ema or self.model, None) if weights_only else (self.model, self.ema)
        try:
            save_checkpoint(
                self.run_dir / CHECKPOINT_DIR, tag, model=model, ema_model=ema,
                config=self.config.to_dict(), step=self.step, metrics=metrics,
                train_state=self._train_state() if with_state else None, keep_previous=with_state,
            )
        except OSError as err:  # full disk, quota, permissions: the earlier complete checkpoint stays
            raise UserError(
                f"cannot write checkpoint {tag} at step {self.step} in {self.run_dir / CHECKPOINT_DIR}: "
                f"{err.strerror or err}; the previous complete checkpoint is intact (--resume continues it)"
            ) from err

    # ----- logging and validation (rank 0) ------------------------------------------------------
    def _log(self, message: str, echo: bool = True) -> None:
        """Append to train.log (rank 0), and print above the progress bar when ``echo``."""
        if self.log_file is not None:
            self.log_file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
            self.log_file.flush()
            if echo:
                tqdm.write(message)

    def _validate(self) -> dict[str, Any]:
        """Per-task PSNR/SSIM of the EMA (or raw) model; logs scalars and input|restored|target images."""
        model = self.ema.module if self.ema is not None else self.model
        result = evaluate_model(
            model, self.val_set, device=self.device,
            bf16=self.precision == "bf16", keep_images=SAMPLE_IMAGES,
            lpips_net=None if self.config.train.val_lpips == "off" else self.config.train.val_lpips,
        )
        metrics = {task: dict(values) for task, values in result.per_task.items() if task != AVERAGE_ROW}
        mean_psnr = sum(m["psnr"] for m in metrics.values()) / len(metrics)
        self._log(f"step {self.step} validation, mean PSNR {mean_psnr:.3f}\n{result.to_markdown()}")
        record = {"step": self.step, "train_hours": self.train_seconds / 3600, "mean_psnr": mean_psnr,
                  "per_task": metrics}
        with open(self.run_dir / VALIDATION_LOG, "a") as log:  # one JSON line per validation: the curves
            log.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for task, values in metrics.items():
                self.writer.add_scalar(f"val/{task}/psnr", values["psnr"], self.step)
                self.writer.add_scalar(f"val/{task}/ssim", values["ssim"], self.step)
                if "lpips" in values:
                    self.writer.add_scalar(f"val/{task}/lpips", values["lpips"], self.step)
            self.writer.add_scalar("val/mean_psnr", mean_psnr, self.step)
            for i, (lq, restored, gt) in enumerate(result.triplets):
                strip = torch.cat([lq, restored, gt], dim=-1).clamp(0, 1)
                self.writer.add_image(f"samples/{i}", strip, self.step)
        return {"mean_psnr": mean_psnr, "per_task": metrics}

    # ----- the loop -----------------------------------------------------------------------------
    def _train_step(self, batch: dict[str, Any]) -> float:
        lq = batch["lq"].to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        gt = batch["gt"].to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        with autocast(self.device, self.precision):
            pred, auxiliary = self.train_forward(lq)
        loss = self.loss_fn(pred, gt)
        if auxiliary is not None:
            loss = loss + auxiliary
        skip = self.config.train.nonfinite_loss == "skip"
        if not self.scaler.is_enabled() and not skip and not torch.isfinite(loss):
            raise UserError(f"training diverged: loss is {loss.item()} at step {self.step}; lower optim.lr "
                            "(or set train.nonfinite_loss=skip); no checkpoint was written with it")
        self.scaler.scale(loss).backward()
        if skip and not self.scaler.is_enabled() and not self._finite_gradients():
            # Gradients are all-reduced, so every rank sees the same non-finite value and skips together.
            self.optimizer.zero_grad(set_to_none=True)
            with warnings.catch_warnings():  # a skipped first step is meant: the schedule follows the step
                warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
                self.scheduler.step()
            self.skipped_steps += 1
            self._log(f"step {self.step}: loss {loss.item()} or its gradient is not finite; step skipped "
                      f"({self.skipped_steps} so far)")
            return math.nan
        if self.config.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return loss.item()

    def _finite_gradients(self) -> bool:
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        return not grads or bool(torch.isfinite(nn.utils.get_total_norm(grads)))

    def _due(self, interval: int, last: bool) -> bool:
        """Whether an every-``interval`` action falls on this step (the last step always counts)."""
        return (interval > 0 and self.step % interval == 0) or last

    def _report(self, losses: list[float], bar: tqdm) -> None:
        """Log the mean loss since the last report (over all ranks) and the learning rate."""
        finite = [x for x in losses if math.isfinite(x)] or [math.nan]  # skipped steps do not count
        loss = mean_across_ranks(sum(finite) / len(finite), self.ctx, self.device)
        lr = self.scheduler.get_last_lr()[0]
        seconds = self.seconds
        per_step = seconds["total"] / max(1, seconds["steps"])
        data_share = seconds["data"] / max(1e-9, seconds["total"])
        self.seconds = {"data": 0.0, "total": 0.0, "steps": 0}
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
        if self.writer is not None:
            self.writer.add_scalar("train/loss", loss, self.step)
            self.writer.add_scalar("train/lr", lr, self.step)
            self.writer.add_scalar("train/seconds_per_step", per_step, self.step)
        self._log(f"step {self.step} loss {loss:.5f} lr {lr:.3e} epoch {self.epoch} "
                  f"{per_step:.3f} s/step data {data_share:.1%}", echo=False)

    def fit(self) -> dict[str, Any]:
        """Train from the current step to ``train.iters``; returns the last validation metrics."""
        train = self.config.train
        metrics: dict[str, Any] = {}
        if self.ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(self.run_dir / CHECKPOINT_DIR)  # left by a save that was killed
            self.writer = SummaryWriter(str(self.run_dir / "tb"))
            self.log_file = open(self.run_dir / "train.log", "a")  # noqa: SIM115 - closed in finally
        try:
            self._log(
                f"{'resuming at' if self.step else 'starting'} step {self.step}/{train.iters}: "
                f"{self.config.model.name}, {sum(p.numel() for p in self.model.parameters()):,} params, "
                f"{self.ctx.world_size} process(es) x batch {self.loader.batch_size}, "
                f"patch {self.stages[self.stage].patch_size} on {self.device} in {self.precision}; "
                f"{len(self.train_set)} training items, {len(self.loader)} iterations per epoch"
            )
            warning = validation_warning(self.config.data) if self.val_set is not None else None
            if warning is not None:
                self._log(warning)
            for note in self.notes:
                self._log(note)
            self.notes.clear()
            self.model.train()
            bar = tqdm(total=train.iters, initial=self.step, disable=not self.ctx.is_main, dynamic_ncols=True)
            batches = self._batches()
            losses: list[float] = []
            deadline = time.monotonic() + 60 * train.time_limit_minutes if train.time_limit_minutes else math.inf
            clock = time.monotonic()
            while self.step < train.iters:
                if (stage := stage_at(self.stages, self.step)) != self.stage:
                    batches.close()  # lets the old loader's workers go
                    self._use_stage(stage)
                    self.epoch, self.position = self.epoch + 1, 0
                    batches = self._batches()
                    self._log(f"step {self.step}: patch {self.stages[stage].patch_size}, "
                              f"batch {self.stages[stage].batch_size}")
                start = time.perf_counter()
                batch = next(batches)
                loaded = time.perf_counter()
                losses.append(self._train_step(batch))
                done = time.perf_counter()
                if train.compile and self.compile_seconds is None:  # the first step compiles
                    self.compile_seconds = done - loaded
                    self._log(f"torch.compile: first step took {self.compile_seconds:.1f} s")
                else:
                    self.seconds["data"] += loaded - start
                    self.seconds["total"] += done - start
                    self.seconds["steps"] += 1
                self.step += 1
                self.train_seconds += done - clock
                clock = done
                bar.update(1)
                # Every rank stops at the same step: rank 0's clock decides.
                out_of_time = deadline < math.inf and mean_across_ranks(
                    float(time.monotonic() > deadline), self.ctx, self.device) > 0
                last = self.step == train.iters or out_of_time
                if self._due(train.log_every, last):
                    self._report(losses, bar)
                    losses.clear()
                if self.val_set is not None and self._due(train.val_every, last):
                    metrics = self._validate()
                    if metrics["mean_psnr"] > self.best_psnr:
                        self.best_psnr = metrics["mean_psnr"]
                        self._save("best", metrics, with_state=False)
                if self.ctx.is_main and self._due(train.ckpt_every, last):
                    self._save("last", metrics, with_state=True)
                if self.ctx.is_main and self.step in train.keep_steps:
                    self._save(f"step_{self.step}", metrics, with_state=False, weights_only=True)
                now = time.monotonic()  # validation and saving count as the run's time too
                self.train_seconds += now - clock
                clock = now
                if out_of_time:
                    self._log(f"train.time_limit_minutes={train.time_limit_minutes:g} reached at step "
                              f"{self.step}/{train.iters}; --resume continues")
                    break
            bar.close()
            self._log(f"{'finished' if self.step == train.iters else 'stopped'} at step {self.step}; "
                      f"checkpoints in {self.run_dir / CHECKPOINT_DIR}")
        finally:
            if self.writer is not None:
                self.writer.close()
            if self.log_file is not None:
                self.log_file.close()
        return metrics


def train(config: Config, run_dir: str | Path, *, resume: bool = False) -> dict[str, Any]:
    """Train ``config`` into ``run_dir`` (single process, or one rank of a torchrun job).

    ``resume=True`` continues from ``run_dir/checkpoints/last``; a fresh run refuses a folder that
    already holds one. On resume the optimizer and scheduler state (so the learning rates) come from the
    checkpoint; with ``optim.schedule_iters`` null the schedule's length follows ``train.iters``, so raising
    ``train.iters`` on resume stretches the remaining schedule (logged; with ``optim.schedule="wsd"`` nothing
    trained so far changes until the decay begins); a fixed ``optim.schedule_iters`` that the longer run
    would outlive is refused. Returns the last validation metrics.
    """
    run_dir = Path(run_dir)
    checkpoint, problems = latest_valid_checkpoint(run_dir / CHECKPOINT_DIR)
    if resume and checkpoint is None:
        found = f" ({'; '.join(problems)})" if problems else ""
        raise UserError(f"--resume: no checkpoint in {run_dir / CHECKPOINT_DIR} (expected a complete "
                        f"last.safetensors){found}")
    if not resume and checkpoint is not None:
        raise UserError(f"{run_dir} already holds a checkpoint; pass --resume or choose another --out")
    if resume:
        for problem in problems:  # a crash or corruption: fall back to the other, older checkpoint
            note = f"warning: {problem}; resuming from {checkpoint.name}"
            print(note, file=sys.stderr)
            with open(run_dir / "train.log", "a") as log:
                log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {note}\n")
    device = resolve_device(config.train.device, context_from_env().local_rank)
    with distributed_session(device) as ctx:
        trainer = Trainer(config, run_dir, device, ctx)
        if resume:
            trainer.resume(checkpoint)
        elif config.train.init_from is not None:
            trainer.start_from(Path(config.train.init_from).expanduser())
        if ctx.is_main:
            name = f"config.resume-{trainer.step}.yaml" if resume else "config.yaml"
            save_config(config, run_dir / name)
        return trainer.fit()
