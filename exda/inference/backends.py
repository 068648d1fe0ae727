"""Inference backends: eager PyTorch, or the model exported to ONNX and run by onnxruntime or OpenVINO.

Every backend is built into the same kind of callable: float32 B x C x H x W in [0, 1] in, the restored
float32 B x C x H x W out (on the CPU for the ONNX backends), any H x W.
"""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

from exda.errors import UserError
from exda.inference.export import INPUT_NAME, export_onnx

BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "openvino")
_PACKAGES: dict[str, tuple[str, ...]] = {
    "torch": (),
    "onnxruntime": ("onnx", "onnxruntime"),
    "openvino": ("onnx", "openvino"),
}

Restorer = Callable[[torch.Tensor], torch.Tensor]


def _imports(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def available_backends() -> list[str]:
    """The backends whose packages import here ("torch" always)."""
    return [kind for kind in BACKENDS if all(_imports(module) for module in _PACKAGES[kind])]


def build_backend(kind: str, model: nn.Module, *, bf16: bool = False, workdir: Path | None = None) -> Restorer:
    """A callable that restores float32 B x C x H x W with ``model`` on backend ``kind``.

    ``bf16``: bfloat16 autocast ("torch") or OpenVINO's bf16 inference precision ("openvino").
    ``workdir``: where the ONNX backends keep ``model.onnx`` (default: a temp folder, deleted once loaded).
    """
    if kind not in BACKENDS:
        raise UserError(f"unknown backend '{kind}' (known: {', '.join(BACKENDS)})")
    if not all(_imports(module) for module in _PACKAGES[kind]):
        raise UserError(f"backend {kind} needs `pip install exda[backends]`")
    if kind == "torch":
        return _torch_restorer(model, bf16)
    if bf16 and kind == "onnxruntime":
        raise UserError("bf16 is not available with the onnxruntime backend (use openvino or torch)")
    folder = nullcontext(workdir) if workdir is not None else tempfile.TemporaryDirectory(prefix="exda-onnx-")
    with folder as where:
        onnx_path = export_onnx(model, Path(where) / "model.onnx")
        return _onnxruntime_restorer(onnx_path) if kind == "onnxruntime" else _openvino_restorer(onnx_path, bf16)


def _torch_restorer(model: nn.Module, bf16: bool) -> Restorer:
    from exda.inference.fast import optimize_for_inference

    return optimize_for_inference(model, precision="bf16" if bf16 else "fp32")


def _to_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float32).contiguous().numpy()


def _onnxruntime_restorer(onnx_path: Path) -> Restorer:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def restore(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {INPUT_NAME: _to_numpy(x)})[0])

    return restore


def _openvino_restorer(onnx_path: Path, bf16: bool) -> Restorer:
    """OpenVINO with a static shape per input size: the ONNX graph is read once and, for each new H x W,
    reshaped to it and compiled (OpenVINO's own model cache under ``<cache_dir>/openvino`` makes the
    compile of a size seen before a load). One stream, no core pinning, torch's thread count."""
    import openvino as ov

    from exda.inference.compiled import cache_dir

    core = ov.Core()
    core.set_property({"CACHE_DIR": str(cache_dir() / "openvino")})
    source = core.read_model(str(onnx_path))
    config = {
        "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        "ENABLE_CPU_PINNING": False,  # a pinned thread waits when another process holds its core
    }
    requests: dict[tuple[int, ...], object] = {}

    def request_for(shape: tuple[int, ...]):
        if shape not in requests:
            model = source.clone()
            model.reshape({model.inputs[0]: ov.PartialShape(list(shape))})
            requests[shape] = core.compile_model(model, "CPU", config).create_infer_request()
        return requests[shape]

    def restore(x: torch.Tensor) -> torch.Tensor:
        request = request_for(tuple(x.shape))
        request.infer({0: _to_numpy(x)})
        return torch.from_numpy(request.get_output_tensor(0).data.copy())  # the buffer is reused by the next call

    return restore
