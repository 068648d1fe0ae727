"""What ``exda bench`` (:mod:`exda.commands.bench`) measures: one machine's speed, in one run.

    exda bench                                   # full size: 256 and 512 px, every path and backend, training
    exda bench --models exda_restormer_small --sizes 128 --skip-train
    python benchmarks/speed.py --device cuda --compile

Measures the matmul peak (fp32 and bf16 GFLOP/s), then inference rows (eager fp32, the fast path of
:func:`exda.inference.fast.optimize_for_inference`, ONNX backends) with latency, achieved GFLOP/s, the
share of the matmul peak, peak memory and agreement with the fp32 eager output, then training-step rows
(fp32 contiguous vs the trainer's bf16 + channels-last path). Prints Markdown tables; writes JSON.

Every row runs in a fresh process (``python -m exda.engine.bench --row SPEC``), so its peak memory is
its own. The peak is the kernel's resident high-water mark (``VmHWM``), reset just before the first
forward pass so that building the model or exporting it does not count. ``ru_maxrss`` is not used on
Linux: after ``exec`` it starts at the spawning process's peak and cannot be reset.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import math
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from exda.atomic import atomic_write, write_results
from exda.errors import UserError

Row = dict[str, Any]

INPUT_SEED = 0
MATMUL_REPEATS, MATMUL_WARMUP = 5, 2
# path -> (backend for build_backend or None for PyTorch, bf16 for the backend)
# the fast path while a busy loop holds one core: threads = the idle cores, or all of them (the old default)
LOADED_PATHS = ("fast_loaded", "fast_loaded_all_threads")
BACKEND_PATHS: dict[str, tuple[str, bool]] = {
    "onnxruntime": ("onnxruntime", False),
    "openvino_f32": ("openvino", False),
    "openvino_bf16": ("openvino", True),
}


# ----- machine ------------------------------------------------------------------------------------
def cpu_model_name() -> str:
    """The CPU's "model name" from /proc/cpuinfo, else what the platform module says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": cpu_model_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["float32_matmul_precision"] = torch.get_float32_matmul_precision()
    return info


def require_checkpoints(paths: list[Path]) -> None:
    """A benchmark's checkpoint arguments: a :class:`UserError` naming the first that is not a file."""
    missing = [path for path in map(Path, paths) if not path.is_file()]
    if missing:
        raise UserError(f"no checkpoint file {missing[0]}")


def run_benchmark(program: str, argv: list[str] | None, out: Path, measure: Callable[[], dict],
                  to_markdown: Callable[[dict], str]) -> int:
    """The end of a CPU benchmark script ``benchmarks/<program>.py``; returns its exit status.

    ``measure()`` runs with gradients off; its record, after the command line and the machine, is written
    as JSON at ``out`` and Markdown beside it (``.md``), each atomically, and the Markdown is printed. A
    :class:`UserError` from ``measure`` is one line on stderr and status 2, and nothing is written.
    """
    command = f"python benchmarks/{program}.py " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        with torch.no_grad():
            record = {"command": command.strip(), "machine": machine_info(torch.device("cpu")), **measure()}
    except UserError as err:
        print(f"{program}: {err}", file=sys.stderr)
        return 2
    markdown = to_markdown(record)
    write_results(out, record, markdown)
    print(markdown)
    print(f"wrote {out} and {Path(out).with_suffix('.md')}")
    return 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(n: int, dtype: torch.dtype, device: torch.device) -> float:
    """GFLOP/s of an n x n x n matrix product (2 n^3 FLOPs), the median after warm-up."""
    generator = torch.Generator().manual_seed(INPUT_SEED)
    a, b = (torch.rand(n, n, generator=generator).to(device, dtype) for _ in range(2))
    times = []
    for _ in range(MATMUL_WARMUP + MATMUL_REPEATS):
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times[MATMUL_WARMUP:]) / 1e9


# ----- inside a row's process ---------------------------------------------------------------------
def _proc_status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class MemoryProbe:
    """Peak memory of what runs between ``start()`` and ``stop()``: resident set, and CUDA's allocator."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.rss_before_kib: int | None = None
        self.cuda_before = 0

    def start(self) -> None:
        try:  # "5" resets this process's resident high-water mark to the current RSS (Linux >= 4.0)
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        self.rss_before_kib = _proc_status_kib("VmRSS")
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.cuda_before = torch.cuda.memory_allocated(self.device)

    def stop(self) -> dict[str, float | None]:
        peak_kib = _proc_status_kib("VmHWM")
        if peak_kib is None or self.rss_before_kib is None:  # no /proc: ru_maxrss, which cannot be reset
            import resource

            peak_kib, self.rss_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, None
        result: dict[str, float | None] = {
            "rss_before_mib": None if self.rss_before_kib is None else self.rss_before_kib / 1024,
            "peak_rss_mib": peak_kib / 1024,
            "rss_increase_mib": None if self.rss_before_kib is None else (peak_kib - self.rss_before_kib) / 1024,
        }
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
            result["cuda_peak_mib"] = peak / 2**20
            result["cuda_increase_mib"] = (peak - self.cuda_before) / 2**20
        return result


def _time_calls(call: Callable[[], Any], device: torch.device, count: int) -> tuple[list[float], Any]:
    """Wall-clock seconds of ``count`` calls, and the last call's result."""
    times, result = [], None
    for _ in range(count):
        _sync(device)
        start = time.perf_counter()
        result = call()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times, result


def _seeded_model(name: str, device: torch.device) -> torch.nn.Module:
    from exda.models.registry import create_model

    torch.manual_seed(0)  # the same random weights in every row's process
    return create_model(name).to(device)


def official_restormer(checkout: str) -> torch.nn.Module:
    """The official Restormer network (its default configuration) from a checkout of swz30/Restormer; the
    official code needs ``einops`` on the path."""
    import importlib.util

    file = Path(checkout) / "basicsr" / "models" / "archs" / "restormer_arch.py"
    if not file.is_file():
        raise UserError(f"--official {checkout}: no {file.relative_to(checkout)} there (a swz30/Restormer checkout)")
    spec = importlib.util.spec_from_file_location("official_restormer_arch", file)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    torch.manual_seed(0)
    return module.Restormer().eval()


def _busy_loop() -> subprocess.Popen:
    """A concurrent CPU load: one Python process spinning on one core."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def _restorer(path: str, model: torch.nn.Module, compile_: bool) -> tuple[Callable[[torch.Tensor], Any], str]:
    """The forward call of an inference path, and the precision it computes in."""
    if path in ("eager", "official"):
        model.eval()

        def eager(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return model(x)

        return eager, "fp32"
    if path in ("fast", "fast_compile", *LOADED_PATHS):
        from exda.inference.fast import optimize_for_inference

        fast = optimize_for_inference(model, compile=compile_)
        return fast, "bf16" if fast.bf16 else "fp32"
    if path == "compiled":
        from exda.inference.compiled import CompiledInference
        from exda.inference.fast import optimize_for_inference

        compiled = CompiledInference(optimize_for_inference(model), "on")
        return compiled, compiled.precision
    from exda.inference.backends import build_backend

    kind, bf16 = BACKEND_PATHS[path]
    return build_backend(kind, model, bf16=bf16), "bf16" if bf16 else "fp32"


def inference_row(spec: Row) -> Row:
    """Latency, peak memory and agreement of one model, path and size (run in its own process)."""
    from exda.inference.threads import set_threads
    from exda.metrics import psnr

    device = torch.device(spec["device"])
    path = spec["path"]
    model = official_restormer(spec["official"]) if path == "official" else _seeded_model(spec["model"], device)
    size = spec["size"]
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(INPUT_SEED)).to(device)
    load = _busy_loop() if path in LOADED_PATHS else None
    try:
        if load is not None:  # the idle-core count must see the load; all threads: the old default
            time.sleep(1.0)
            spec = {**spec, "threads": set_threads(None if path == "fast_loaded" else spec["threads"])}
        start = time.perf_counter()
        forward, precision = _restorer(path, model, path == "fast_compile")
        if path == "compiled":
            forward.runner(tuple(x.shape))
        setup_s = time.perf_counter() - start
        memory = MemoryProbe(device)
        memory.start()
        times, out = _time_calls(lambda: forward(x), device, spec["warmup"] + spec["repeats"])
    finally:
        if load is not None:
            load.kill()
            load.wait()
    row: Row = {
        "precision": precision,
        "threads": torch.get_num_threads(),
        "setup_s": setup_s,
        "first_call_s": times[0],
        "latency_s": statistics.median(times[spec["warmup"]:]),
        "times_s": times[spec["warmup"]:],
        **memory.stop(),
    }
    if getattr(forward, "compiled", None) is not None:
        row["compiled"] = forward.compiled
    if path == "compiled":
        event = forward.events[0]
        row.update(artefact=event.action, artefact_s=event.seconds, artefact_file=event.path.name)
    out = out.detach().float().cpu()
    if spec.get("save_output"):
        np.save(spec["save_output"], out.numpy())
    if spec.get("reference") and path != "official":  # the official network has its own random weights
        reference = torch.from_numpy(np.load(spec["reference"]))
        agreement = psnr(out, reference).item()
        row["agreement_psnr_db"] = agreement if math.isfinite(agreement) else None
        row["max_abs_diff"] = (out - reference).abs().max().item()
    return row


def train_row(spec: Row) -> Row:
    """Median AdamW step time of one model in fp32 contiguous or the fast path (run in its own process).

    The fast path is the trainer's: channels-last activations and bf16 autocast (``train.channels_last``,
    ``train.precision=bf16``); the loss and optimiser are the trainer's defaults.
    """
    from exda.amp import autocast
    from exda.engine.config import LossConfig, OptimConfig
    from exda.engine.losses import build_loss

    device = torch.device(spec["device"])
    model = _seeded_model(spec["model"], device).train()
    fast = spec["mode"] == "fast"
    memory_format = torch.channels_last if fast else torch.contiguous_format
    model.to(memory_format=memory_format)
    optim = OptimConfig()
    optimizer = torch.optim.AdamW(model.parameters(), lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay)
    loss_fn = build_loss(LossConfig())
    generator = torch.Generator().manual_seed(INPUT_SEED)
    shape = (spec["batch"], model.in_channels, spec["patch"], spec["patch"])
    lq, gt = (torch.rand(shape, generator=generator).to(device).contiguous(memory_format=memory_format)
              for _ in range(2))

    def step() -> float:
        with autocast(device, "bf16" if fast else "fp32"):
            pred = model(lq)
        loss = loss_fn(pred, gt)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    memory = MemoryProbe(device)
    memory.start()
    times, _ = _time_calls(step, device, spec["warmup"] + spec["repeats"])
    step_s = statistics.median(times[spec["warmup"]:])
    return {"precision": "bf16" if fast else "fp32", "channels_last": fast, "step_s": step_s,
            "steps_per_hour": 3600 / step_s, "times_s": times[spec["warmup"]:], **memory.stop()}


def _row_entry(argv: list[str]) -> int:
    """``python -m exda.engine.bench --row SPEC``: run one row, write its JSON to ``SPEC["result"]``."""
    parser = argparse.ArgumentParser(prog="python -m exda.engine.bench", description="one row of `exda bench`")
    parser.add_argument("--row", required=True, help="the row's spec as JSON (written by `exda bench`)")
    spec = json.loads(parser.parse_args(argv).row)
    torch.set_num_threads(spec["threads"])
    row = inference_row(spec) if spec["kind"] == "inference" else train_row(spec)
    Path(spec["result"]).write_text(json.dumps(row, allow_nan=False))
    return 0


# ----- the orchestrating process ------------------------------------------------------------------
_PUBLIC = ("model", "path", "mode", "size", "batch", "patch")


def run_row(spec: Row, result: Path) -> Row:
    """Run one row in a fresh Python process, its JSON written to ``result``; a failure becomes the row's
    ``error`` (the run goes on)."""
    command = [sys.executable, "-m", "exda.engine.bench", "--row", json.dumps({**spec, "result": str(result)})]
    proc = subprocess.run(command, capture_output=True, text=True)
    row = {key: spec[key] for key in _PUBLIC if key in spec}
    if proc.returncode != 0 or not result.is_file():
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        return {**row, "error": lines[-1] if lines else f"exit status {proc.returncode}"}
    return {**row, **json.loads(result.read_text())}


@functools.cache
def _flops(name: str, size: int) -> int:
    from exda.models.profile import profile_model

    return profile_model(name, (size, size))[1]


def reference_model(models: list[str]) -> str:
    """The model whose fp32 eager row the latency ratios refer to: the first ExDA model, else the first."""
    return next((name for name in models if name.startswith("exda_")), models[0])


def add_derived(inference: list[Row], training: list[Row], reference: str, peaks: dict[str, float]) -> None:
    """Fill in GFLOP/s, share of the matmul peak and the ratio columns (in place)."""
    from exda.models.profile import backbone_of

    done = {(r["model"], r["path"], r["size"]): r for r in inference if "latency_s" in r}
    for row in done.values():
        row["flops"] = _flops("restormer" if row["path"] == "official" else row["model"], row["size"])
        row["gflops_per_s"] = row["flops"] / row["latency_s"] / 1e9
        peak = peaks.get(row["precision"])
        row["peak_fraction"] = row["gflops_per_s"] / peak if peak else None
        ref = done.get((reference, "eager", row["size"]))
        row["vs_reference"] = row["latency_s"] / ref["latency_s"] if ref else None
        official = done.get(("restormer", "official", row["size"]))
        row["speedup_vs_official"] = official["latency_s"] / row["latency_s"] if official else None
        backbone = backbone_of(row["model"])
        base = done.get((backbone, row["path"], row["size"])) if backbone else None
        row["exda_overhead"] = row["latency_s"] / base["latency_s"] if base else None
    steps = {(r["model"], r["mode"]): r for r in training if "step_s" in r}
    for (model, mode), row in steps.items():
        fp32 = steps.get((model, "fp32"))
        row["speedup"] = fp32["step_s"] / row["step_s"] if fp32 and mode == "fast" else None


def plan_inference(args: argparse.Namespace, device: torch.device) -> list[Row]:
    """Every inference row, each (model, size) starting with its fp32 eager reference."""
    from exda.inference.backends import available_backends

    backends = [] if args.skip_backends or device.type != "cpu" else available_backends()
    wanted = args.backend_paths or list(BACKEND_PATHS)
    rows = []
    for size in args.sizes:
        for model in args.models:
            paths = ["eager", "fast", *(["fast_compile"] if args.compile else [])]
            paths += ["compiled"] if model in (args.aot or []) else []
            if model == "restormer" and args.official:
                paths.append("official")
            if model.startswith("exda_"):
                paths += [path for path, (kind, _) in BACKEND_PATHS.items() if kind in backends and path in wanted]
                paths += list(LOADED_PATHS) if args.concurrent_load else []
            paths = [path for path in paths if path in args.paths] if args.paths else paths
            rows += [{"kind": "inference", "model": model, "path": path, "size": size,
                      **({"official": args.official} if path == "official" else {})} for path in paths]
    return rows


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _memory(row: Row, cuda: bool) -> tuple[float, float | None]:
    """A row's (peak, increase) in MiB: CUDA's allocator on a GPU, the resident set otherwise."""
    return (row["cuda_peak_mib"], row["cuda_increase_mib"]) if cuda else (row["peak_rss_mib"], row["rss_increase_mib"])


def format_report(result: dict[str, Any]) -> str:
    """The Markdown tables of a finished run."""
    machine, matmul = result["machine"], result["matmul"]
    cuda = "gpu" in machine
    lines = [
        f"{machine['cpu']}, {machine['threads']} threads" + (f", {machine['gpu']}" if cuda else "")
        + f", torch {machine['torch']}, {machine['date']}",
        f"matmul {matmul['n']}^3: fp32 {_fmt(matmul['fp32_gflops'], '.1f')} GFLOP/s, "
        f"bf16 {_fmt(matmul['bf16_gflops'], '.1f')} GFLOP/s",
    ]
    mem = "CUDA" if cuda else "RSS"
    if result["inference"]:
        lines += [
            "",
            f"Inference, batch 1. x ref: latency / {result['reference_model']} fp32 eager at the same size; "
            "ExDA overhead: latency / the backbone's on the same path; % peak: of the matmul peak in the "
            "row's precision; PSNR: output vs the same model's fp32 eager output; x official: the official "
            "Restormer code's fp32 eager latency / this one; setup s: building the path (compiled: the "
            "artefact's compile or load); *_loaded: a busy loop holds one core.",
            "",
            f"| model | path | precision | size | latency s | threads | setup s | first call s | x ref | "
            f"x official | ExDA overhead | GFLOP/s | % peak | peak {mem} MiB | +{mem} MiB | PSNR dB |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in result["inference"]:
            head = f"| {r['model']} | {r['path']} | {r.get('precision', '')} | {r['size']} |"
            if "error" in r:
                lines.append(f"{head} error: {r['error']} |" + " |" * 10)
                continue
            peak_mem, increase = _memory(r, cuda)
            agreement = "ref" if r["path"] == "eager" else "" if r["path"] == "official" else (
                "identical" if r.get("max_abs_diff") == 0 else _fmt(r.get("agreement_psnr_db"), ".1f"))
            fraction = None if r["peak_fraction"] is None else 100 * r["peak_fraction"]
            setup = r["setup_s"] if r["path"] != "compiled" else r["artefact_s"]
            lines.append(
                f"{head} {r['latency_s']:.4f} | {r.get('threads', '')} | {setup:.2f} | {r['first_call_s']:.3f} | "
                f"{_fmt(r['vs_reference'], '.2f')} | "
                f"{_fmt(r.get('speedup_vs_official'), '.2f')} | {_fmt(r['exda_overhead'], '.3f')} | "
                f"{r['gflops_per_s']:.1f} | {_fmt(fraction, '.1f')} | {peak_mem:.0f} | {_fmt(increase, '.0f')} | "
                f"{agreement} |"
            )
    if result["training"]:
        options = result["options"]
        lines += [
            "",
            f"Training step (forward, L1 loss, backward, AdamW), batch {options['train_batch']}, patch "
            f"{options['train_patch']}. fast = bf16 autocast + channels-last (the trainer's fast path).",
            "",
            f"| model | mode | step s | steps/h | speed-up | peak {mem} MiB | +{mem} MiB |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for r in result["training"]:
            if "error" in r:
                lines.append(f"| {r['model']} | {r['mode']} | error: {r['error']} |" + " |" * 4)
                continue
            peak_mem, increase = _memory(r, cuda)
            lines.append(
                f"| {r['model']} | {r['mode']} | {r['step_s']:.3f} | {r['steps_per_hour']:.0f} | "
                f"{_fmt(r['speedup'], '.2f')} | {peak_mem:.0f} | {_fmt(increase, '.0f')} |"
            )
    return "\n".join(lines)


def _command_line() -> str:
    """How this process was started, for the JSON."""
    program = Path(sys.argv[0])
    if program.name == "__main__.py":
        name = "python -m exda"
    else:
        name = f"python {program}" if program.suffix == ".py" else program.name
    return " ".join([name, *map(shlex.quote, sys.argv[1:])])


def measure(args: argparse.Namespace) -> int:
    """Run every row of ``exda bench``'s options (checked by :mod:`exda.commands.bench`), print the tables and
    write the JSON; 1 when any row failed (its error is in the table and the JSON), else 0."""
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    out = args.out or Path(f"speed_{device.type}.json")
    from exda.inference.fast import native_bf16

    # Emulated bf16 (no AMX / AVX-512 BF16) runs a 2048^3 product for minutes: measure it on a small one.
    bf16_n = args.matmul_size if native_bf16(device) else min(args.matmul_size, 256)
    peaks = {"fp32": matmul_gflops(args.matmul_size, torch.float32, device),
             "bf16": matmul_gflops(bf16_n, torch.bfloat16, device)}
    common = {"device": args.device, "threads": threads, "repeats": args.repeats, "warmup": args.warmup}
    plan = plan_inference(args, device)
    if not args.skip_train:
        plan += [{"kind": "train", "model": model, "mode": mode, "batch": args.train_batch, "patch": args.train_patch}
                 for model in args.train_models for mode in ("fp32", "fast")]
    inference: list[Row] = []
    training: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="exda-bench-") as tmp:
        workdir = Path(tmp)
        for i, spec in enumerate(plan, 1):
            spec = {**spec, **common}
            label = " ".join(str(spec[k]) for k in ("model", "path", "mode", "size") if k in spec)
            print(f"[{i}/{len(plan)}] {label}", file=sys.stderr, flush=True)
            if spec["kind"] == "train":
                training.append(run_row(spec, workdir / f"row{i}.json"))
                continue
            reference = workdir / f"{spec['model']}_{spec['size']}.npy"
            if spec["path"] == "eager":
                spec["save_output"] = str(reference)
            elif reference.is_file():
                spec["reference"] = str(reference)
            inference.append(run_row(spec, workdir / f"row{i}.json"))
    reference = reference_model(args.models)
    add_derived(inference, training, reference, peaks)
    options = {key: str(value) if isinstance(value, Path) else value
               for key, value in vars(args).items() if not key.startswith("_") and key != "command"}
    result = {
        "machine": machine_info(device),
        "command": _command_line(),
        "options": {**options, "out": str(out), "threads": threads},
        "matmul": {"n": args.matmul_size, "fp32_gflops": peaks["fp32"], "bf16_gflops": peaks["bf16"], "bf16_n": bf16_n},
        "reference_model": reference,
        "inference": inference,
        "training": training,
    }
    print(format_report(result))
    atomic_write(out, lambda tmp: tmp.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n"))
    print(f"\nwrote {out}", file=sys.stderr)
    failed = [row for row in inference + training if "error" in row]
    if failed:
        print(f"{len(failed)} row(s) failed; their error is in the table and the JSON", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(_row_entry(sys.argv[1:]))
