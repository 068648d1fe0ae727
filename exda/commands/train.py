"""``exda train``: train a model from a YAML preset, on one process or under ``torchrun``.

    exda train --config configs/tiny_deg3.yaml --set train.iters=200 optim.lr=1e-4 --out runs/try
    exda train --config tiny_deg3 --out runs/try --resume --set train.iters=400
    torchrun --nproc_per_node=4 -m exda train --config configs/deg3.yaml
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from exda.engine.config import load_config
from exda.engine.distributed import context_from_env
from exda.engine.run_lock import run_lock
from exda.engine.trainer import train
from exda.errors import UserError

# The repository's presets; present in a source checkout (and an editable install), not in a wheel.
PRESET_DIR = Path(__file__).resolve().parents[2] / "configs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True,
                        help="a YAML config, or a preset name in the repository's configs/ (tiny_deg3)")
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="SECTION.KEY=VALUE",
                        help="override config values (YAML syntax), e.g. --set optim.lr=1e-4 train.iters=200; "
                             "repeatable")
    parser.add_argument("--out", type=Path, default=None,
                        help="run folder (default runs/<preset>-<timestamp>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its checkpoints/last (required: --out)")


def resolve_config_path(name: str) -> Path:
    """A path as given if it exists, else ``configs/<name>.yaml`` of the repository."""
    path = Path(name)
    if path.is_file():
        return path
    preset = PRESET_DIR / f"{path.stem}.yaml"
    if path.parent == Path(".") and preset.is_file():
        return preset
    known = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
    raise UserError(f"config {name!r} not found" + (f"; presets: {known}" if known else ""))


def run(args: argparse.Namespace) -> int:
    config_path = resolve_config_path(args.config)
    config = load_config(config_path, args.overrides)
    if args.resume and args.out is None:
        raise UserError("--resume needs --out RUN_DIR (the run to continue)")
    out = args.out or Path("runs") / f"{config_path.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    target = out / "config.yaml"
    if not args.resume and target.exists() and target.resolve() == config_path.resolve():
        raise UserError(f"--config {config_path} lies in --out and would be overwritten; copy it elsewhere")
    with run_lock(out, enabled=context_from_env().is_main):  # a second exda train on this --out refuses
        train(config, out, resume=args.resume)
    return 0
