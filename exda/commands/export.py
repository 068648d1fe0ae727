"""``exda export``: write a checkpoint (or a shipped default model) as an ONNX file with dynamic H and W.

The file is checked twice before it is written under its name: ``onnx.checker`` (in
:func:`exda.inference.export.export_onnx`) and, where onnxruntime is installed, one restore of an odd-sized
input compared with the PyTorch fp32 output: below :data:`MIN_AGREEMENT_DB` the file is not written and
the command fails (one line). A model that does not export (its traits say why) is refused before that.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from exda.commands.options import ARCH_HELP
from exda.errors import UserError
from exda.inference.export import export_onnx
from exda.inference.loader import load_network
from exda.inference.pretrained import DEFAULT_MODELS, default_checkpoint
from exda.metrics import psnr
from exda.models import model_traits

FORMATS = ("onnx",)
_CHECK_SIZE = (67, 45)  # odd, non-square, different from the export's own example size
# PSNR of onnxruntime's output against PyTorch's fp32 one that a file must reach. Float round-off gives
# 136-151 dB on every exportable model (tests/inference/test_backends.py); a wrong graph gives far less (e.g.
# Histoformer's, whose output float round-off moves: 28 dB).
MIN_AGREEMENT_DB = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", type=Path, help="the file to write, e.g. model.onnx")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a .safetensors checkpoint, a run folder (its last checkpoint) or a published .pth / "
                             ".ckpt; default: the shipped default model (see --model)")
    parser.add_argument("--arch", default=None, metavar="NAME", help=ARCH_HELP)
    parser.add_argument("--model", choices=tuple(DEFAULT_MODELS), default="photo",
                        help="which shipped default model to export without --checkpoint (default photo)")
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="export format (default onnx)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    parser.add_argument("--no-ema", action="store_true", help="export the raw weights, not the EMA ones")
    parser.add_argument("--overwrite", "--force", dest="overwrite", action="store_true",
                        help="replace OUTPUT if it exists (as exda restore --overwrite)")


def run(args: argparse.Namespace) -> int:
    output: Path = args.output
    if output.suffix.lower() != ".onnx":
        raise UserError(f"output of --format onnx must end in .onnx, got {output}")
    if output.is_dir():
        raise UserError(f"output is a folder, give a file name: {output}")
    if output.exists() and not args.overwrite:
        raise UserError(f"{output} exists; pass --overwrite to replace it")
    if not output.resolve().parent.is_dir():
        raise UserError(f"output folder does not exist: {output.parent}")
    checkpoint = args.checkpoint if args.checkpoint is not None else default_checkpoint(args.model)
    net, info = load_network(checkpoint, arch=args.arch, use_ema=not args.no_ema, device="cpu")
    net = net.float()
    agreement = None

    def check(onnx_file: Path) -> None:
        nonlocal agreement
        agreement = onnxruntime_agreement(net, onnx_file)
        if agreement is not None and not agreement >= MIN_AGREEMENT_DB:  # NaN fails too
            raise UserError(f"onnxruntime's output differs from PyTorch's fp32 one (PSNR {agreement:.1f} dB on a "
                            f"{_CHECK_SIZE[1]}x{_CHECK_SIZE[0]} input, below {MIN_AGREEMENT_DB:.0f} dB); "
                            f"{output} not written")

    export_onnx(net, output, opset=args.opset, check=check)
    size_mib = output.stat().st_size / 2**20
    print(f"exported {info.arch} (step {info.step}) -> {output} ({size_mib:.1f} MiB, "
          f"dynamic batch/height/width)")
    if agreement is None:
        print("exda export: onnxruntime not installed; the file passed onnx.checker but was not run",
              file=sys.stderr)
    else:
        print(f"onnxruntime vs PyTorch fp32 on a {_CHECK_SIZE[1]}x{_CHECK_SIZE[0]} input: PSNR {agreement:.1f} dB")
    return 0


def onnxruntime_agreement(net: torch.nn.Module, onnx_path: Path) -> float | None:
    """PSNR (dB) between onnxruntime's and PyTorch's fp32 outputs on one seeded odd-sized input; None
    without onnxruntime."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, model_traits(net).in_channels, *_CHECK_SIZE, generator=generator)
    with torch.inference_mode():
        expected = net(x).clamp(0, 1)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]).clamp(0, 1)
    return float(psnr(got, expected)[0])
