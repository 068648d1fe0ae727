"""The compiled fast path: AOTInductor artefacts, built once per model, precision and shape, kept on disk.

``torch.compile`` on this project's CPUs takes minutes and is paid again by every process. Here the
network is exported for one static input shape (a tile size, or a whole image's size), compiled ahead of
time by Inductor with its weights frozen into the artefact (bf16 autocast and channels-last inside, fp32
in and out, as :class:`~exda.inference.fast.FastInference`), and packaged as a ``.pt2`` file under
:func:`cache_dir`. A later process that meets the same weights (their digest), precision, shape and torch
version loads the package in well under a second.

:class:`CompiledInference` serves the other shapes with the eager fast path, and compiles a new shape
only when told to (``mode="on"``) or when the work announced for it is large enough to win the compile
time back (``mode="auto"``, see :meth:`CompiledInference.expect`).
"""

from __future__ import annotations

import hashlib
import inspect
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from exda.amp import autocast
from exda.atomic import atomic_write
from exda.inference.fast import FastInference

CompileMode = Literal["auto", "on", "off"]
COMPILE_MODES: tuple[str, ...] = ("auto", "on", "off")
CACHE_ENV = "EXDA_COMPILED_CACHE"
# What ``auto`` assumes: a compile costs this many seconds and makes a call this much faster than the
# eager fast path (benchmarks/results/speed_paths.md, exda_restormer at 256 px on 2 cores: 245.6 s,
# 10.45 s -> 8.83 s).
ASSUMED_COMPILE_S = 300.0
ASSUMED_SPEEDUP = 1.18

Shape = tuple[int, int, int, int]


def cache_dir() -> Path:
    """Where compiled artefacts live: ``$EXDA_COMPILED_CACHE``, else ``$XDG_CACHE_HOME/exda/compiled``
    (``~/.cache/exda/compiled``). Never inside the repository or the installed package."""
    if override := os.environ.get(CACHE_ENV):
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "exda" / "compiled"


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of what the compiled graph depends on: the source files of the model's layer classes (and of
    this module), the architecture's description and every state-dict tensor (names, dtypes, shapes, bytes)."""
    digest = hashlib.sha256(repr(model).encode())
    sources = {inspect.getsourcefile(type(module)) for module in model.modules()} | {__file__}
    for source in sorted(filter(None, sources)):
        digest.update(Path(source).read_bytes())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        flat = tensor.detach().cpu().clone(memory_format=torch.contiguous_format).reshape(-1)
        digest.update(flat.view(torch.uint8).numpy().tobytes())  # the same bytes in any memory format
    return digest.hexdigest()


@dataclass(frozen=True)
class ArtefactKey:
    """What one compiled artefact is valid for."""

    model_name: str
    digest: str
    precision: Literal["bf16", "fp32"]
    shape: Shape

    def filename(self) -> str:
        b, c, h, w = self.shape
        torch_version = torch.__version__.replace("+", "_")
        return f"{self.model_name}-{self.digest[:16]}-{self.precision}-{b}x{c}x{h}x{w}-torch{torch_version}.pt2"

    def path(self, folder: Path | None = None) -> Path:
        return (folder or cache_dir()) / self.filename()


class _ExportedForward(nn.Module):
    """What is exported: fp32 contiguous in, channels-last (+ bf16 autocast) inside, fp32 contiguous out."""

    def __init__(self, model: nn.Module, bf16: bool) -> None:
        super().__init__()
        self.model, self.bf16 = model, bf16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(x.device, "bf16" if self.bf16 else "fp32"):
            y = self.model(x.contiguous(memory_format=torch.channels_last))
        return y.float().contiguous()


def compile_artefact(fast: FastInference, shape: Shape, path: Path) -> float:
    """Export ``fast.model`` for input ``shape``, compile it with AOTInductor (weights frozen) and write the
    package to ``path`` (atomically); returns the seconds it took."""
    start = time.perf_counter()
    example = torch.zeros(shape, device=next(fast.model.parameters()).device)
    with torch.no_grad():
        program = torch.export.export(_ExportedForward(fast.model, fast.bf16).eval(), (example,))
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        package = tmp.with_suffix(".pt2")  # AOTInductor wants the .pt2 suffix
        try:
            torch._inductor.aoti_compile_and_package(  # the documented AOTInductor entry point
                program, package_path=str(package), inductor_configs={"freezing": True})
            package.replace(tmp)
        finally:
            package.unlink(missing_ok=True)

    atomic_write(path, write)
    return time.perf_counter() - start


def load_artefact(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    """The compiled forward of a package written by :func:`compile_artefact`."""
    return torch._inductor.aoti_load_package(str(path))


@dataclass
class CompiledEvent:
    """What happened for one shape: ``"loaded"`` from the cache or ``"compiled"`` now, and the seconds it took."""

    shape: Shape
    action: Literal["loaded", "compiled"]
    seconds: float
    path: Path


class CompiledInference(nn.Module):
    """The fast path with AOTInductor artefacts for the shapes that have one; fp32 in and out.

    ``mode``: ``"on"`` compiles (or loads) every shape it meets; ``"auto"`` loads cached artefacts and
    compiles a shape only when :meth:`expect` announced enough work for it; ``"off"`` is the eager fast
    path. Calls with a shape that has no artefact run ``fast``. ``events`` records loads and compiles.
    """

    def __init__(self, fast: FastInference, mode: CompileMode = "auto", folder: Path | None = None) -> None:
        super().__init__()
        if mode not in COMPILE_MODES:
            raise ValueError(f"compile mode must be one of {COMPILE_MODES}, got {mode!r}")
        self.fast, self.mode, self.folder = fast, mode, folder
        self.precision: Literal["bf16", "fp32"] = "bf16" if fast.bf16 else "fp32"
        self._digest: str | None = None
        self._runners: dict[Shape, Callable[[torch.Tensor], torch.Tensor]] = {}
        self._wanted: set[Shape] = set()
        self.events: list[CompiledEvent] = []

    @property
    def in_channels(self) -> int:
        return self.fast.in_channels

    @property
    def model_name(self) -> str:
        return self.fast.model_name

    @property
    def bf16(self) -> bool:
        return self.fast.bf16

    def key(self, shape: Shape) -> ArtefactKey:
        if self._digest is None:
            self._digest = weights_digest(self.fast.model)
        return ArtefactKey(self.model_name, self._digest, self.precision, shape)

    def cached(self, shape: Shape) -> bool:
        """Whether an artefact for ``shape`` is on disk (or loaded)."""
        return shape in self._runners or (self.mode != "off" and self.key(shape).path(self.folder).is_file())

    def expect(self, shape: Shape, calls: int, eager_call_s: float | None = None) -> bool:
        """Announce ``calls`` forward passes of ``shape``; in ``auto`` mode, mark the shape for compiling when
        the time the compiled path saves (``ASSUMED_SPEEDUP``, ``eager_call_s`` per eager call, else an
        estimate from the pixel count) exceeds ``ASSUMED_COMPILE_S``. Returns whether the shape will be
        compiled or loaded."""
        if self.mode == "off":
            return False
        if self.mode == "on" or self.cached(shape):
            return True
        per_call = eager_call_s if eager_call_s is not None else estimate_eager_seconds(shape)
        if calls * per_call * (1 - 1 / ASSUMED_SPEEDUP) > ASSUMED_COMPILE_S:
            self._wanted.add(shape)
        return shape in self._wanted

    def runner(self, shape: Shape) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The compiled forward for ``shape`` (loading or compiling it as the mode says), or None."""
        if shape in self._runners:
            return self._runners[shape]
        if self.mode == "off" or not (self.mode == "on" or shape in self._wanted or self.cached(shape)):
            return None
        path = self.key(shape).path(self.folder)
        if path.is_file():
            start = time.perf_counter()
            run = load_artefact(path)
            self.events.append(CompiledEvent(shape, "loaded", time.perf_counter() - start, path))
        else:
            seconds = compile_artefact(self.fast, shape, path)
            run = load_artefact(path)
            self.events.append(CompiledEvent(shape, "compiled", seconds, path))
        self._runners[shape] = run
        return run

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape: Shape = tuple(x.shape)  # type: ignore[assignment]
        run = self.runner(shape) if x.device.type == "cpu" else None
        if run is None:
            return self.fast(x)
        with torch.inference_mode():
            y = run(x.to(torch.float32).contiguous())
        return y.clone() if y.is_inference() else y

    def describe(self) -> str:
        """One line naming the path used (for ``exda restore``)."""
        fast = f"{'bf16' if self.bf16 else 'fp32'}, channels-last"
        if not self.events:
            return f"fast eager path ({fast}; --compile {self.mode})"
        parts = [f"{e.action} {e.shape[-1]}x{e.shape[-2]} in {e.seconds:.1f} s" for e in self.events]
        return f"compiled fast path ({fast}, AOTInductor: {'; '.join(parts)}; cache {self.events[0].path.parent})"

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, precision={self.precision!r}, shapes={sorted(self._runners)}"


# The eager fast path on 2 CPU cores (benchmarks/results/large_image_tile.md: the shipped default model,
# ~19 s per megapixel; the full-size models take ~160): an estimate for before anything is measured.
EAGER_SECONDS_PER_MPIXEL = 20.0


def estimate_eager_seconds(shape: Shape) -> float:
    """A rough eager fast-path time for one call of ``shape`` before any has been measured."""
    b, _, h, w = shape
    return b * h * w / 1e6 * EAGER_SECONDS_PER_MPIXEL
