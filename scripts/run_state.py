"""Keep a long training run's resume state in the repository, compactly, and bring it back.

    python scripts/run_state.py pack RUN_DIR STATE_DIR     # RUN_DIR/checkpoints/last -> STATE_DIR (replaced)
    python scripts/run_state.py pack --final RUN_DIR STATE_DIR  # a finished run: its logs and step_* only
    python scripts/run_state.py unpack STATE_DIR RUN_DIR   # -> RUN_DIR/checkpoints/last; then
    exda train --config CONFIG --out RUN_DIR --resume      # continues the run

STATE_DIR holds one ``state.safetensors`` (the weights in fp32; the EMA weights and AdamW's two moments
rounded to bf16, which is what makes it about 10 bytes per parameter instead of 16), ``state.json``
(everything else resuming needs: step, data position, scheduler, RNG, config), the run's ``train.log``
and ``validation.jsonl``, and the checkpoints kept at fixed steps (``step_<N>.*``, ``train.keep_steps``).
``pack --final`` of a finished run (step = ``train.iters``) that will not be extended keeps only its logs and
kept checkpoints. Resuming from it is therefore not bit-exact (the EMA and the moments lose their
low mantissa bits once per pack); the data order, the step and the schedule continue exactly. Each file is
written atomically, the weights file last but one and ``state.json`` last, so an interrupted pack leaves
the previous state readable.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from exda.atomic import atomic_write
from exda.engine.checkpoint import load_training_state, save_checkpoint
from exda.errors import UserError
from exda.models import create_model

FORMAT = "exda-run-state-v1"
ROUNDED = torch.bfloat16
LOGS = ("train.log", "validation.jsonl", "config.yaml")


def _round(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to(ROUNDED) if tensor.is_floating_point() else tensor


def _copy_kept(src: Path, dst: Path) -> None:
    """The checkpoints kept at fixed steps (``train.keep_steps``: inference weights only, written once)
    that ``dst`` does not hold yet; the JSON, which marks a complete checkpoint, last."""
    for weights in sorted(src.glob("step_*.safetensors")):
        info = weights.with_suffix(".json")
        if info.is_file() and not (dst / info.name).is_file():
            for path in (weights, info):
                atomic_write(dst / path.name, lambda tmp, path=path: shutil.copyfile(path, tmp))


def pack(run_dir: Path, state_dir: Path, final: bool = False) -> None:
    saved = load_training_state(run_dir)
    if final:
        if saved["step"] < saved["config"]["train"]["iters"]:
            raise UserError(f"{run_dir} stands at step {saved['step']} of {saved['config']['train']['iters']}: "
                            "not finished (pack it without --final)")
        return _pack_finished(run_dir, state_dir, saved)
    train_state = dict(saved["train_state"])
    optimizer = train_state.pop("optimizer")
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v.contiguous() for k, v in saved["model"].items()}
    tensors |= {f"ema.{k}": _round(v).contiguous() for k, v in saved["ema"].items()}
    moments: dict[str, dict[str, Any]] = {}
    for index, slots in optimizer["state"].items():
        moments[str(index)] = {}
        for slot, value in slots.items():
            if torch.is_tensor(value) and value.dim() > 0:
                tensors[f"optim.{index}.{slot}"] = _round(value).contiguous()
            else:  # the step count (a 0-d tensor) stays exact
                moments[str(index)][slot] = value.item() if torch.is_tensor(value) else value
    tensors["rng.torch"] = train_state.pop("torch_rng")
    train_state.pop("cuda_rng", None)  # a CPU run; a CUDA run's generator restarts from the torch state
    record = {
        "format": FORMAT, "model_name": saved["model_name"], "model_kwargs": saved["model_kwargs"],
        "step": saved["step"], "config": saved["config"], "metrics": saved["metrics"],
        "optimizer": {"param_groups": optimizer["param_groups"], "scalars": moments},
        "train_state": train_state,
    }
    state_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(state_dir / "state.safetensors", lambda tmp: save_file(tensors, str(tmp)))
    for name in LOGS:
        if (run_dir / name).is_file():
            atomic_write(state_dir / name, lambda tmp, src=run_dir / name: shutil.copyfile(src, tmp))
    _copy_kept(run_dir / "checkpoints", state_dir)
    atomic_write(state_dir / "state.json", lambda tmp: tmp.write_text(json.dumps(record, indent=1) + "\n"))
    size = sum(p.stat().st_size for p in state_dir.iterdir()) / 2**20
    print(f"packed step {saved['step']} of {run_dir} into {state_dir} ({size:.1f} MiB)")


def _pack_finished(run_dir: Path, state_dir: Path, saved: dict[str, Any]) -> None:
    """A run that is over keeps its logs and kept checkpoints; its resume state goes (the repository stays lean)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    for name in LOGS:
        if (run_dir / name).is_file():
            atomic_write(state_dir / name, lambda tmp, src=run_dir / name: shutil.copyfile(src, tmp))
    _copy_kept(run_dir / "checkpoints", state_dir)
    record = {"format": FORMAT, "finished": True, "model_name": saved["model_name"],
              "model_kwargs": saved["model_kwargs"], "step": saved["step"], "config": saved["config"],
              "metrics": saved["metrics"]}
    atomic_write(state_dir / "state.json", lambda tmp: tmp.write_text(json.dumps(record, indent=1) + "\n"))
    (state_dir / "state.safetensors").unlink(missing_ok=True)
    print(f"{run_dir} finished at step {saved['step']}: kept its logs and step checkpoints in {state_dir}")


def unpack(state_dir: Path, run_dir: Path) -> None:
    info_path, weights_path = state_dir / "state.json", state_dir / "state.safetensors"
    record = json.loads(info_path.read_text()) if info_path.is_file() else {}
    if record.get("finished"):
        raise UserError(f"the run in {state_dir} finished at step {record['step']}: nothing to resume")
    if not weights_path.is_file() or record.get("format") != FORMAT:
        raise UserError(f"{state_dir} holds no packed run state ({FORMAT}: state.json + state.safetensors)")
    if (run_dir / "checkpoints").exists():
        raise UserError(f"{run_dir} already holds checkpoints; unpack into a new folder")
    tensors = load_file(str(weights_path))
    model = create_model(record["model_name"], **record["model_kwargs"])
    ema = create_model(record["model_name"], **record["model_kwargs"])
    fp32 = {name: p.dtype for name, p in model.state_dict().items()}
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v.to(fp32[k[4:]]) for k, v in tensors.items() if k.startswith("ema.")})
    state: dict[int, dict[str, Any]] = {}
    for index, scalars in record["optimizer"]["scalars"].items():
        state[int(index)] = {slot: torch.tensor(value, dtype=torch.float32) for slot, value in scalars.items()}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, slot = key.split(".", 2)
            state[int(index)][slot] = value.float()
    train_state = {
        **record["train_state"], "torch_rng": tensors["rng.torch"], "cuda_rng": [],
        "optimizer": {"state": state, "param_groups": record["optimizer"]["param_groups"]},
    }
    save_checkpoint(run_dir / "checkpoints", "last", model=model, ema_model=ema, config=record["config"],
                    step=record["step"], metrics=record["metrics"], train_state=train_state)
    for name in LOGS:
        if (state_dir / name).is_file():
            shutil.copyfile(state_dir / name, run_dir / name)
    _copy_kept(state_dir, run_dir / "checkpoints")
    print(f"unpacked step {record['step']} into {run_dir}; continue with: exda train --config CONFIG "
          f"--out {run_dir} --resume")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="RUN_DIR's last checkpoint -> STATE_DIR (replaced)")
    p.add_argument("run_dir", type=Path)
    p.add_argument("state_dir", type=Path)
    p.add_argument("--final", action="store_true", help="the run is over: keep logs and step checkpoints only")
    u = sub.add_parser("unpack", help="STATE_DIR -> RUN_DIR/checkpoints/last, ready for --resume")
    u.add_argument("state_dir", type=Path)
    u.add_argument("run_dir", type=Path)
    args = parser.parse_args()
    try:
        if args.command == "pack":
            pack(args.run_dir, args.state_dir, final=args.final)
        else:
            unpack(args.state_dir, args.run_dir)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
