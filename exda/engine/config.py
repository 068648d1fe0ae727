"""Training configuration: typed dataclasses are the source of truth, YAML is their serialised form.

``load_config("configs/tiny_deg3.yaml", ["optim.lr=1e-4"])`` reads a preset, applies ``--set``
overrides (values parsed with ``yaml.safe_load``, never ``eval``) and checks every key and type; an
unknown key or a wrong type is a :class:`UserError` naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from exda.atomic import atomic_write
from exda.errors import UserError


@dataclass
class ModelConfig:
    """Which registered network to train (``exda models`` lists names) and its factory kwargs."""

    name: str = "exda_restormer_test"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class PatchStage:
    """One stage of progressive patch training (Restormer): ``iters`` steps at this patch and batch size."""

    iters: int
    patch_size: int
    batch_size: int  # per process, as data.batch_size


@dataclass
class DataConfig:
    """Training and validation data, built by ``exda.data.build_dataset``."""

    layout: str = "synthetic"
    root: str | None = None
    degradations: list[str] = field(default_factory=list)
    patch_size: int = 128
    batch_size: int = 8  # per process; the global batch is batch_size x world size
    num_workers: int = 2
    length: int | None = None  # items per epoch; None = what the layout has (synthetic: its default)
    in_channels: int = 3
    strength: float = 1.0
    augment: bool = True
    scene_colour: float = 0.0  # tint half the clean training crops (log-gain spread; synthetic layout, RGB)
    task_repeats: dict[str, int] = field(default_factory=dict)  # e.g. {derain: 120}, as PromptIR's loader
    val_layout: str | None = None  # None = same as layout
    val_root: str | None = None  # None = same as root
    val_degradations: list[str] | None = None  # None = same as degradations
    val_patch_size: int | None = None  # crop validation images (fixed per item); None = whole images
    val_max_items: int = 50  # evenly spaced over the tasks; 0 = no validation
    val_seed: int | None = None  # the validation degradations' seed; None = train.seed (fix it to compare seeds)
    # Progressive patch training: stages run in order and replace patch_size/batch_size; the last one
    # runs on to train.iters, so the stages' iters need not sum to it. Empty = one stage, as above.
    progressive: list[PatchStage] = field(default_factory=list)


@dataclass
class OptimConfig:
    """AdamW with a linear warmup, then cosine decay to ``min_lr`` over ``schedule_iters``."""

    lr: float = 2e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_iters: int = 0
    schedule_iters: int | None = None  # cosine length incl. warmup; None = train.iters
    min_lr: float = 1e-6
    grad_clip: float = 0.0  # max global grad norm; 0 = off
    # "cosine": warmup, then cosine decay over the whole schedule. "wsd" (warmup-stable-decay): warmup, a
    # constant lr, then a cosine decay over the last ``decay_fraction`` of the schedule, so a run can be
    # extended (train.iters raised on --resume) without a jump in lr as long as its decay has not begun.
    schedule: Literal["cosine", "wsd"] = "cosine"
    decay_fraction: float = 0.2
    fused: bool = False  # torch's fused AdamW kernel (CPU and CUDA) instead of the multi-tensor one


@dataclass
class LossConfig:
    """Pixel loss, plus optional FFT-amplitude L1 (MoCE-IR uses 0.1) and Pearson terms (Histoformer uses 1)."""

    kind: Literal["l1", "charbonnier"] = "l1"
    fft_weight: float = 0.0
    pearson_weight: float = 0.0


@dataclass
class TrainConfig:
    """Loop length, intervals (in iterations; 0 = never, except the final save) and numerics."""

    iters: int = 1000
    val_every: int = 500
    ckpt_every: int = 500
    log_every: int = 50
    # auto: bf16 where the device computes it in hardware (CUDA with bf16; a CPU with AMX or AVX-512 BF16),
    # else fp32 (a CPU without them runs bf16 ~10x slower than fp32: docs/training.md)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool = True  # NHWC memory layout: faster depthwise convs and LayerNorm (benchmarks/README.md)
    ema_decay: float = 0.0  # 0 = off; e.g. 0.999
    nonfinite_loss: Literal["stop", "skip"] = "stop"  # NaN/Inf loss or gradient: stop the run, or skip the step
    val_lpips: Literal["off", "alex", "vgg"] = "off"  # add LPIPS to validation (offline weights; slower)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # CPU threads of this process (torch.set_num_threads); 0 = torch's default (one per core).
    threads: int = 0
    time_limit_minutes: float = 0.0  # stop (validate, save last) after this many minutes; 0 = no limit
    # Also keep the inference weights (the EMA where there is one) at these steps as checkpoints/step_<N>:
    # paired comparisons of runs at a fixed step, which last/best replace.
    keep_steps: list[int] = field(default_factory=list)
    # --resume refuses a change to what fixes the batches (batch/patch size, data root, processes); false
    # continues weights, EMA, optimizer and schedule with a new data order (a GPU with a larger batch).
    resume_exact: bool = True
    compile: bool = False  # torch.compile the training forward/backward (inductor); compile time is logged
    # A fresh run starts from these weights (fine-tuning): any checkpoint `--checkpoint` takes (an exda one's EMA
    # weights where it has them, a published .pth / .ckpt) of the same network; optimizer, schedule and step
    # start afresh. None = random initial weights. --resume ignores it (the run's own checkpoint continues).
    init_from: str | None = None


@dataclass
class Config:
    """A whole training run; ``save_config`` writes it into every run folder."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples become lists) for YAML and JSON."""
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "").replace(f"{__name__}.", "")


def _check(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` converted to ``tp`` (int->float, list->tuple) or raise a UserError for ``key``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        try:
            return _check(value, inner, key)
        except UserError:
            raise UserError(f"config key {key} must be {_type_name(tp)}, got {value!r}") from None
    if origin is Literal:
        if value in args:
            return value
    elif tp is Any:
        return value
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        # YAML 1.1 reads "2e-4" (no dot) as a string; accept it as the float the user meant.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is list:
        if isinstance(value, list):
            return [_check(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    elif origin is tuple:
        if isinstance(value, (list, tuple)) and len(value) == len(args):
            pairs = enumerate(zip(value, args, strict=True))
            return tuple(_check(v, a, f"{key}[{i}]") for i, (v, a) in pairs)
    elif origin is dict:
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return {k: _check(v, args[1], f"{key}.{k}") for k, v in value.items()}
    elif dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    else:
        raise TypeError(f"config type {tp} of {key} is not supported")
    raise UserError(f"config key {key} must be {_type_name(tp)}, got {value!r}")


def _build(cls: type, raw: Any, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, rejecting unknown or missing keys and wrong types."""
    where = prefix or "the config"
    if not isinstance(raw, dict):
        raise UserError(f"{where} must be a mapping of keys to values, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in raw if k not in names]
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else str(unknown[0])
        raise UserError(f"unknown config key {key!r}; valid keys in {where}: {', '.join(names)}")
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in raw]
    if missing:
        raise UserError(f"{where} is missing {', '.join(missing)}; it needs {', '.join(required)}")
    values = {}
    for name, value in raw.items():
        key = f"{prefix}.{name}" if prefix else name
        values[name] = _check(value, hints[name], key)
    return cls(**values)


def _impossible(key: str, value: Any, needs: str) -> UserError:
    return UserError(f"config key {key} has an impossible value {value!r}; it must be {needs}")


def _check_ranges(config: Config) -> None:
    """Reject values of the right type that cannot work (zero iterations, negative intervals)."""
    data, optim, train = config.data, config.optim, config.train
    rules = {  # key: (holds, what it needs)
        "train.iters": (train.iters >= 1, ">= 1"),
        "data.batch_size": (data.batch_size >= 1, ">= 1"),
        "data.patch_size": (data.patch_size >= 1, ">= 1"),
        "data.num_workers": (data.num_workers >= 0, ">= 0"),
        "data.val_max_items": (data.val_max_items >= 0, ">= 0"),
        "data.strength": (data.strength >= 0, ">= 0"),
        "optim.lr": (optim.lr > 0, "> 0"),
        "optim.min_lr": (0 <= optim.min_lr <= optim.lr, f"0 <= min_lr <= optim.lr ({optim.lr:g})"),
        "optim.warmup_iters": (optim.warmup_iters >= 0, ">= 0"),
        "optim.schedule_iters": (
            optim.schedule_iters is None or optim.schedule_iters >= max(1, optim.warmup_iters),
            f"null or >= max(1, optim.warmup_iters) = {max(1, optim.warmup_iters)}",
        ),
        "optim.grad_clip": (optim.grad_clip >= 0, ">= 0"),
        "optim.decay_fraction": (0 < optim.decay_fraction <= 1, "0 < decay_fraction <= 1"),
        "train.threads": (train.threads >= 0, ">= 0 (0 = torch's default)"),
        "train.time_limit_minutes": (train.time_limit_minutes >= 0, ">= 0 (0 = no limit)"),
        "loss.fft_weight": (config.loss.fft_weight >= 0, ">= 0"),
        "loss.pearson_weight": (config.loss.pearson_weight >= 0, ">= 0"),
        "train.ema_decay": (0 <= train.ema_decay < 1, "0 <= ema_decay < 1"),
        "train.val_every": (train.val_every >= 0, ">= 0"),
        "train.ckpt_every": (train.ckpt_every >= 0, ">= 0"),
        "train.log_every": (train.log_every >= 0, ">= 0"),
    }
    for key, (ok, needs) in rules.items():
        if not ok:
            section, name = key.split(".")
            raise _impossible(key, getattr(getattr(config, section), name), needs)
    for i, stage in enumerate(data.progressive):
        for name, value in dataclasses.asdict(stage).items():
            if value < 1:
                raise _impossible(f"data.progressive[{i}].{name}", value, ">= 1")


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Build a checked :class:`Config`; missing keys keep their defaults."""
    config = _build(Config, raw, "")
    _check_ranges(config)
    return config


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set ``a.b=value`` in the nested dict ``raw``; the value is parsed with ``yaml.safe_load``."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise UserError(f"override {override!r} must look like section.key=value")
    parts = key.strip().split(".")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as err:
        raise UserError(f"override {override!r}: value is not valid YAML") from err
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UserError(f"override {override!r}: {'.'.join(parts[: i + 1])} is not a section")
        node = child
    node[parts[-1]] = value


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML preset (or start from defaults when ``path`` is None) and apply ``--set`` overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise UserError(f"config file {path} is not valid YAML{where}") from err
        if loaded is not None and not isinstance(loaded, dict):
            raise UserError(f"config file {path} must hold a mapping of sections")
        raw = loaded or {}
    for override in overrides:
        apply_override(raw, override)
    return config_from_dict(raw)


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically); ``load_config`` reads it back equal."""
    text = yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=False)
    atomic_write(Path(path), lambda tmp: tmp.write_text(text))
