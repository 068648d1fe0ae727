"""Keep a long training run's resume state in the repository, compactly, and bring it back.

    python scripts/run_state.py pack RUN_DIR STATE_DIR     # RUN_DIR/checkpoints/last -> STATE_DIR (replaced)
    python scripts/run_state.py pack --final RUN_DIR STATE_DIR  # a finished run: its logs and step_* only
    python scripts/run_state.py unpack STATE_DIR RUN_DIR   # -> RUN_DIR/checkpoints/last; then
    exda train --config CONFIG --out RUN_DIR --resume      # continues the run

STATE_DIR holds one ``state.safetensors``, ``state.json`` (everything else resuming needs: step, data
position, scheduler, RNG, config, and where each tensor lies in the file), the run's ``train.log`` and
``validation.jsonl``, and the checkpoints kept at fixed steps (``step_<N>.*``, ``train.keep_steps``, their
weights rounded to bf16: they are for comparisons, not for resuming). ``pack --final`` of a finished run
(step = ``train.iters``) that will not be extended keeps only its logs and kept checkpoints.

The state is stored for git, which zlib-compresses each file version and keeps every one: the EMA weights
are rounded to bf16; the weights are stored as their difference from those rounded EMA weights (a few
hundred steps of updates, far smaller than the weights) in fp8 (e4m3, one fp32 scale per block of 128
values, about 6% relative error of the difference); AdamW's first moment and the square root of its second
moment are rounded to fp8 the same way (the moments are running averages that the next steps renew). The
EMA is stored as byte planes (all first bytes, then all second bytes), whose sign-and-exponent plane
compresses well. About 5 bytes per parameter reach the repository, against 16 in a checkpoint. Resuming is
therefore not bit-exact; the data order, the step and the schedule continue exactly. Each file is written
atomically, ``state.json`` last, so an interrupted pack leaves the previous state readable. ``unpack`` also
reads the older formats (``exda-run-state-v2``: fp32 weights; ``exda-run-state-v1``: bf16 moments, no byte
planes).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import zlib
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from exda.atomic import atomic_write
from exda.engine.checkpoint import load_training_state, save_checkpoint
from exda.errors import UserError
from exda.inference.checkpoint_format import file_digest
from exda.models import create_model

FORMAT = "exda-run-state-v3"
V2_FORMAT = "exda-run-state-v2"
V1_FORMAT = "exda-run-state-v1"
LOGS = ("train.log", "validation.jsonl", "config.yaml")
BLOCK = 128  # values per fp8 scale


def byte_planes(tensors: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """The tensors, cast to ``dtype`` and concatenated, as a (bytes per value, n) uint8 tensor."""
    flat = torch.cat([t.detach().reshape(-1).to(dtype) for t in tensors])
    return flat.view(torch.uint8).view(-1, flat.element_size()).t().contiguous()


def from_byte_planes(planes: torch.Tensor, dtype: torch.dtype, shapes: list[list[int]]) -> list[torch.Tensor]:
    return _split(planes.t().contiguous().view(dtype).reshape(-1), shapes)


def to_fp8(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """fp8 (e4m3) codes of a 1-d tensor and one fp32 scale per block of ``BLOCK`` values."""
    blocks = torch.nn.functional.pad(values.float(), (0, -values.numel() % BLOCK)).view(-1, BLOCK)
    scales = blocks.abs().amax(dim=1, keepdim=True) / torch.finfo(torch.float8_e4m3fn).max
    scales[scales == 0] = 1.0
    return (blocks / scales).to(torch.float8_e4m3fn).view(torch.uint8).reshape(-1), scales.reshape(-1)


def from_fp8(codes: torch.Tensor, scales: torch.Tensor, count: int) -> torch.Tensor:
    blocks = codes.view(torch.float8_e4m3fn).float().view(-1, BLOCK) * scales[:, None]
    return blocks.reshape(-1)[:count]


def _split(flat: torch.Tensor, shapes: list[list[int]]) -> list[torch.Tensor]:
    sizes = [int(torch.Size(shape).numel()) for shape in shapes]
    return [part.reshape(shape).clone() for part, shape in zip(flat.split(sizes), shapes, strict=True)]


def _pack_moments(moments: dict[str, list[torch.Tensor]]) -> dict[str, torch.Tensor]:
    """AdamW's ``exp_avg`` as fp8, ``exp_avg_sq`` as the fp8 of its square root (its range halves)."""
    tensors = {}
    for slot, parts in moments.items():
        flat = torch.cat([p.reshape(-1).float() for p in parts])
        codes, scales = to_fp8(flat.sqrt() if slot == "exp_avg_sq" else flat)
        tensors[f"optim.{slot}"], tensors[f"optim.{slot}.scale"] = codes, scales
    return tensors


def _unpack_moments(tensors: dict[str, torch.Tensor], slot: str, shapes: list[list[int]]) -> list[torch.Tensor]:
    count = sum(int(torch.Size(shape).numel()) for shape in shapes)
    flat = from_fp8(tensors[f"optim.{slot}"], tensors[f"optim.{slot}.scale"], count)
    return _split(flat.square() if slot == "exp_avg_sq" else flat, shapes)


def _residual(model: dict[str, torch.Tensor], ema: dict[str, torch.Tensor]) -> torch.Tensor:
    """The weights minus the EMA weights as stored (bf16), flat, in key order."""
    return torch.cat([(model[k].float() - ema[k].to(torch.bfloat16).float()).reshape(-1) for k in model])


def _relative_rms(values: torch.Tensor, reference: torch.Tensor) -> float:
    return round(float(values.square().sum().sqrt() / reference.square().sum().sqrt()), 6)


def _round_kept(src: Path, dst: Path) -> None:
    """A kept checkpoint rounded to bf16 (``src`` -> ``dst``, both ``.safetensors``): its metadata (the
    network) kept, and its JSON's recorded size and SHA-256 those of the rounded file."""
    with safe_open(str(src), "pt") as f:
        metadata = f.metadata()
        weights = {k: f.get_tensor(k) for k in f.keys()}
    weights = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in weights.items()}
    atomic_write(dst, lambda tmp: save_file(weights, str(tmp), metadata=metadata))
    record = json.loads(src.with_suffix(".json").read_text())
    record["files"] = {".safetensors": file_digest(dst)}
    atomic_write(dst.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n"))


def _copy_kept(src: Path, dst: Path, round_weights: bool = False) -> None:
    """The checkpoints kept at fixed steps (``train.keep_steps``: inference weights only, written once)
    that ``dst`` does not hold yet, their weights rounded to bf16 if asked; the JSON, which marks a
    complete checkpoint, last."""
    for weights in sorted(src.glob("step_*.safetensors")):
        info = weights.with_suffix(".json")
        if not info.is_file() or (dst / info.name).is_file():
            continue
        if round_weights:
            _round_kept(weights, dst / weights.name)
        else:
            atomic_write(dst / weights.name, lambda tmp, path=weights: shutil.copyfile(path, tmp))
            atomic_write(dst / info.name, lambda tmp, path=info: shutil.copyfile(path, tmp))


def pack(run_dir: Path, state_dir: Path, final: bool = False) -> None:
    saved = load_training_state(run_dir)
    if final:
        if saved["step"] < saved["config"]["train"]["iters"]:
            raise UserError(f"{run_dir} stands at step {saved['step']} of {saved['config']['train']['iters']}: "
                            "not finished (pack it without --final)")
        return _pack_finished(run_dir, state_dir, saved)
    record_file = state_dir / "state.json"
    if record_file.is_file() and json.loads(record_file.read_text())["step"] == saved["step"]:
        # an unpacked state packed again differs in its rounding, not in its step: git would store it twice
        print(f"{state_dir} already holds step {saved['step']} of {run_dir}: left as it is")
        return
    train_state = dict(saved["train_state"])
    optimizer = train_state.pop("optimizer")
    model_keys, ema_keys = list(saved["model"]), list(saved["ema"])
    if model_keys != ema_keys or not all(v.is_floating_point() for v in saved["model"].values()):
        raise UserError(f"{run_dir}: run_state packs a run whose EMA holds the same floating-point tensors")
    tensors = {"ema": byte_planes([saved["ema"][k] for k in ema_keys], torch.bfloat16)}
    residual = _residual(saved["model"], saved["ema"])
    tensors["model.residual"], tensors["model.residual.scale"] = to_fp8(residual)
    weights = torch.cat([v.float().reshape(-1) for v in saved["model"].values()])
    error = from_fp8(tensors["model.residual"], tensors["model.residual.scale"], residual.numel()) - residual
    rounding = {"weights_rms_error": _relative_rms(error, weights), "residual_rms": _relative_rms(residual, weights)}
    indices = sorted(optimizer["state"], key=int)
    scalars: dict[str, dict[str, Any]] = {}
    moments: dict[str, list[torch.Tensor]] = {}
    for index in indices:
        scalars[str(index)] = {}
        for slot, value in optimizer["state"][index].items():
            if torch.is_tensor(value) and value.dim() > 0:
                moments.setdefault(slot, []).append(value)
            else:  # the step count (a 0-d tensor) stays exact
                scalars[str(index)][slot] = value.item() if torch.is_tensor(value) else value
    if set(moments) - {"exp_avg", "exp_avg_sq"}:
        raise UserError(f"{run_dir}: optimizer state {sorted(moments)} is not AdamW's; run_state packs AdamW only")
    tensors |= _pack_moments(moments)
    tensors["rng.torch"] = train_state.pop("torch_rng")
    train_state.pop("cuda_rng", None)  # a CPU run; a CUDA run's generator restarts from the torch state
    record = {
        "format": FORMAT, "model_name": saved["model_name"], "model_kwargs": saved["model_kwargs"],
        "step": saved["step"], "config": saved["config"], "metrics": saved["metrics"],
        "optimizer": {"param_groups": optimizer["param_groups"], "scalars": scalars},
        "layout": {"ema": [[k, list(saved["ema"][k].shape)] for k in ema_keys],  # the weights' too
                   "moments": [[str(i), list(optimizer["state"][i]["exp_avg"].shape)] for i in indices
                               if "exp_avg" in optimizer["state"][i]]},
        "train_state": train_state,
    }
    state_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(state_dir / "state.safetensors", lambda tmp: save_file(tensors, str(tmp)))
    stored = (state_dir / "state.safetensors").read_bytes()
    # what it costs the repository (git stores each version zlib-compressed) and what rounding did to the weights
    record["stored"] = {"bytes": len(stored), "zlib_bytes": len(zlib.compress(stored, 6)), **rounding}
    for name in LOGS:
        if (run_dir / name).is_file():
            atomic_write(state_dir / name, lambda tmp, src=run_dir / name: shutil.copyfile(src, tmp))
    _copy_kept(run_dir / "checkpoints", state_dir, round_weights=True)
    atomic_write(state_dir / "state.json", lambda tmp: tmp.write_text(json.dumps(record, indent=1) + "\n"))
    in_git = record["stored"]["zlib_bytes"] / 2**20
    print(f"packed step {saved['step']} of {run_dir} into {state_dir}: {in_git:.1f} MiB in git, "
          f"weights within {100 * rounding['weights_rms_error']:.2f}% rms")


def _pack_finished(run_dir: Path, state_dir: Path, saved: dict[str, Any]) -> None:
    """A run that is over keeps its logs and kept checkpoints; its resume state goes (the repository stays lean)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    for name in LOGS:
        if (run_dir / name).is_file():
            atomic_write(state_dir / name, lambda tmp, src=run_dir / name: shutil.copyfile(src, tmp))
    _copy_kept(run_dir / "checkpoints", state_dir, round_weights=True)
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
    if not weights_path.is_file() or record.get("format") not in (FORMAT, V2_FORMAT, V1_FORMAT):
        raise UserError(f"{state_dir} holds no packed run state ({FORMAT}: state.json + state.safetensors)")
    if (run_dir / "checkpoints").exists():
        raise UserError(f"{run_dir} already holds checkpoints; unpack into a new folder")
    tensors = load_file(str(weights_path))
    model = create_model(record["model_name"], **record["model_kwargs"])
    ema = create_model(record["model_name"], **record["model_kwargs"])
    fp32 = {name: p.dtype for name, p in model.state_dict().items()}
    state: dict[int, dict[str, Any]] = {}
    for index, scalars in record["optimizer"]["scalars"].items():
        state[int(index)] = {slot: torch.tensor(value, dtype=torch.float32) for slot, value in scalars.items()}
    if record["format"] in (FORMAT, V2_FORMAT):
        layout = record["layout"]
        keys, shapes = zip(*layout["ema"], strict=True)
        ema_values = from_byte_planes(tensors["ema"], torch.bfloat16, list(shapes))
        ema.load_state_dict({k: v.to(fp32[k]) for k, v in zip(keys, ema_values, strict=True)})
        if record["format"] == FORMAT:  # the weights: EMA (bf16) + their fp8 difference
            count = sum(v.numel() for v in ema_values)
            residual = _split(from_fp8(tensors["model.residual"], tensors["model.residual.scale"], count), list(shapes))
            values = [e.float() + r for e, r in zip(ema_values, residual, strict=True)]
        else:
            keys, shapes = zip(*layout["model"], strict=True)
            values = from_byte_planes(tensors["model"], torch.float32, list(shapes))
        model.load_state_dict({k: v.to(fp32[k]) for k, v in zip(keys, values, strict=True)})
        indices, shapes = zip(*layout["moments"], strict=True) if layout["moments"] else ((), ())
        for slot in ("exp_avg", "exp_avg_sq"):
            for index, value in zip(indices, _unpack_moments(tensors, slot, list(shapes)), strict=True):
                state[int(index)][slot] = value
    else:  # exda-run-state-v1: one tensor per key, the EMA and the moments in bf16
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        ema.load_state_dict({k[4:]: v.to(fp32[k[4:]]) for k, v in tensors.items() if k.startswith("ema.")})
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
