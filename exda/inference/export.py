"""ONNX export of a restoration model, with batch, height and width left dynamic.

The TorchScript exporter (``dynamo=False``) is used: on these networks it writes a graph that is exact
for every input size in about 2 s, where torch.export's exporter took over a minute for the tiny test
model. The model code is written so that no shape becomes a constant (exda/layers/global_token.py,
``exda.models.unet.pad_to_multiple``). A model whose traits say it does not export (``onnx_unsupported``:
torch.fft, or an output that float round-off already moves) is refused before anything is traced.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from exda.atomic import atomic_write
from exda.errors import UserError
from exda.models import model_traits

DEFAULT_OPSET = 18  # native LayerNormalization (17+); read by onnxruntime >= 1.14 and OpenVINO >= 2023.0
INPUT_NAME, OUTPUT_NAME = "image", "restored"
_EXAMPLE_SIZE = (37, 53)  # odd and non-square, as a reminder that nothing may depend on it


def export_onnx(
    model: nn.Module, path: Path, *, opset: int | None = None, check: Callable[[Path], None] | None = None
) -> Path:
    """Write ``model`` (B x C x H x W float32 in [0, 1] -> the same) to ``path`` as ONNX, checked with
    ``onnx.checker``; B, H and W stay dynamic. The file appears only once it is complete and valid, and
    ``check(file)`` (if given) has returned: it may raise to keep the file from appearing.

    A model whose traits say it does not export is a UserError naming the reason.
    """
    traits = model_traits(model)
    if not traits.onnx_exportable:
        raise UserError(f"{model.model_name} does not export to ONNX: {traits.onnx_unsupported}")
    try:
        import onnx
    except ImportError as err:
        raise UserError("ONNX export needs `pip install exda[backends]`") from err
    path = Path(path)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    example = torch.rand(1, traits.in_channels, *_EXAMPLE_SIZE, device=device)
    axes = {0: "batch", 2: "height", 3: "width"}

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is chosen on purpose
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
                opset_version=opset or DEFAULT_OPSET,
            )
        onnx.checker.check_model(str(tmp), full_check=True)
        if check is not None:
            check(tmp)

    was_training = model.training
    model.eval()
    try:
        atomic_write(path, write)
    finally:
        model.train(was_training)
    return path
