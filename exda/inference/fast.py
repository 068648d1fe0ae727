"""The fast inference path: same weights, same call, fp32 tensors in and out.

``optimize_for_inference(model)`` wraps a network so that each call runs under ``torch.inference_mode``
with channels-last (NHWC) activations, bfloat16 autocast where the hardware runs bf16 matrix products
natively (CPUs with AMX or AVX-512 BF16, CUDA GPUs with bf16), and optionally ``torch.compile``.
Nothing here changes the maths; bf16 rounds, and ``tests/inference/test_fast.py`` holds every path to >= 45 dB
PSNR of the fp32 eager output on real photos. Measured speed-ups: ``benchmarks/README.md``.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from exda.amp import autocast
from exda.models import model_traits

Precision = Literal["auto", "fp32", "bf16"]


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 products in hardware (AMX-BF16 or AVX-512 BF16 flags)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: trust oneDNN's own check
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return "amx_bf16" in flags or "avx512_bf16" in flags


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 is the faster precision on ``device`` (and runs there at all)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


class FastInference(nn.Module):
    """A network for inference: eval mode, inference_mode, NHWC, bf16 autocast, optional torch.compile.

    Takes and returns float32 B x C x H x W (returned in the default contiguous layout). The wrapped
    network stays reachable as ``.model``; ``in_channels`` and ``model_name`` are passed through.
    """

    def __init__(self, model: nn.Module, *, bf16: bool, channels_last: bool, compiled: bool) -> None:
        super().__init__()
        self.model = model.eval()
        self.bf16 = bf16
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        self.compiled = compiled
        self._call = model
        if compiled:
            self._call = torch.compile(model, dynamic=True)

    @property
    def in_channels(self) -> int:
        return model_traits(self.model).in_channels

    @property
    def model_name(self) -> str:
        return self.model.model_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device = next(self.model.parameters()).device
        with torch.inference_mode(), autocast(device, "bf16" if self.bf16 else "fp32"):
            y = self._call(x.to(device=device, dtype=torch.float32).contiguous(memory_format=self.memory_format))
        y = y.float().contiguous()
        return y.clone() if y.is_inference() else y  # callers may update it in place outside inference_mode

    def extra_repr(self) -> str:
        return f"bf16={self.bf16}, memory_format={self.memory_format}, compiled={self.compiled}"


def optimize_for_inference(
    model: nn.Module, *, precision: Precision = "auto", channels_last: bool = True, compile: bool = False
) -> FastInference:
    """The fast version of ``model`` (same weights and call signature, fp32 in and out).

    ``precision="auto"`` picks bf16 where the device runs it natively (and the model's traits do not say
    ``bf16_safe=False``), else fp32. ``compile=True`` adds
    ``torch.compile`` (minutes of compilation on a small CPU, so off by default); if the compiler is
    unavailable here the eager model is used with a warning.
    """
    if isinstance(model, FastInference):
        model = model.model
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    # A network whose output is not continuous in its input (Histoformer sorts pixels by value) is not
    # ``bf16_safe``: bf16 rounding then moves its output by whole grey levels, so auto means fp32.
    auto_bf16 = native_bf16(device) and model_traits(model).bf16_safe
    bf16 = auto_bf16 if precision == "auto" else precision == "bf16"
    compiled = compile and _compiler_works()
    return FastInference(model, bf16=bf16, channels_last=channels_last, compiled=compiled)


@functools.cache
def _compiler_works() -> bool:
    """torch.compile needs a C++ toolchain for the CPU backend; check once with a trivial function."""
    try:
        torch.compile(lambda t: t * 2 + 1)(torch.ones(2))
        return True
    except Exception as err:  # any compiler failure means: fall back to eager
        warnings.warn(f"torch.compile is unavailable here ({type(err).__name__}); using eager mode", stacklevel=3)
        return False
