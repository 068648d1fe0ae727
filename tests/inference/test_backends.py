"""ONNX export and the onnxruntime / OpenVINO backends against eager fp32 PyTorch, on real photo crops.

The export contract runs over every registered model (its tiny ``*_test`` variant; a family's variants share
their traits, tests/models/test_models.py): one whose traits claim ONNX export runs under onnxruntime as in PyTorch,
any other is refused in one line. Also the export-friendly formulations the exported graph relies on (grid
pooling, nearest up-pooling, padding), checked against the PyTorch ops they replace.
"""

from __future__ import annotations

import re
import sys

import pytest
import torch
import torch.nn.functional as F

import exda
from exda.commands.export import MIN_AGREEMENT_DB
from exda.data.io import to_tensor
from exda.data.samples import load_sample
from exda.errors import UserError
from exda.inference.backends import BACKENDS, available_backends, build_backend
from exda.layers.global_token import grid_pool, nearest_resize
from exda.metrics import psnr
from exda.models import model_traits
from exda.models.unet import pad_to_multiple

MODELS = ["restormer_test", "exda_restormer_test", "promptir_test"]
TEST_MODELS = [name for name in exda.list_models() if name.endswith("_test")]
MIN_PSNR = 45.0  # dB between a backend's output and eager fp32 PyTorch


def _photo_crops(h: int, w: int, batch: int) -> torch.Tensor:
    """``batch`` different h x w crops of the astronaut photo, B x 3 x h x w in [0, 1]."""
    photo = to_tensor(load_sample("astronaut"))
    return torch.stack([photo[:, 60 + 90 * i : 60 + 90 * i + h, 180 + 40 * i : 180 + 40 * i + w] for i in range(batch)])


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return exda.create_model(name).eval()


@pytest.mark.slow
@pytest.mark.parametrize("name", TEST_MODELS)
def test_export_contract(name):
    """onnxruntime runs an exportable model as PyTorch fp32 does, to float round-off, for any B x H x W (the
    graph is traced at 1 x C x 37 x 53); any other model is refused in one line, before anything is traced."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model = _model(name)
    traits = model_traits(model)
    if not traits.onnx_exportable:
        with pytest.raises(UserError) as err:
            build_backend("onnxruntime", model)
        assert str(err.value) == f"{name} does not export to ONNX: {traits.onnx_unsupported}"
        assert "\n" not in str(err.value)
        return
    restore = build_backend("onnxruntime", model)
    x = _photo_crops(29, 41, batch=2)[:, : traits.in_channels]
    with torch.inference_mode():
        expected = model(x)
    assert psnr(restore(x), expected).min() >= MIN_AGREEMENT_DB


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("bf16", [False, True], ids=["f32", "bf16"])
def test_openvino_matches_eager_fp32(name, bf16):  # onnxruntime: test_export_contract
    pytest.importorskip("onnx")
    pytest.importorskip("openvino")
    model = _model(name)
    restore = build_backend("openvino", model, bf16=bf16)
    for x in (_photo_crops(96, 136, batch=2), _photo_crops(37, 53, batch=1)):  # one graph, any B x H x W
        with torch.inference_mode():
            expected = model(x)
        out = restore(x)
        assert out.dtype == torch.float32 and out.shape == x.shape
        assert psnr(out, expected).min() >= MIN_PSNR


@pytest.mark.slow
def test_token_options_export_with_dynamic_sizes():
    """The options other than the defaults (test_export_contract) and the first reading (the export CLI test)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    options = dict(token_upsample="aligned", global_token="columns", token_column_scale="area")
    model = exda.create_model("exda_restormer_test", **options).eval()
    restore = build_backend("onnxruntime", model)
    for x in (_photo_crops(96, 136, batch=2), _photo_crops(37, 53, batch=1)):  # sizes unlike the example's
        with torch.inference_mode():
            expected = model(x)
        assert psnr(restore(x), expected).min() >= MIN_PSNR


def test_torch_backend_is_eager_inference():
    model = _model("exda_restormer_test").train()
    x = _photo_crops(37, 53, batch=1)
    out = build_backend("torch", model)(x)
    assert not model.training and not out.requires_grad
    with torch.no_grad():
        assert torch.equal(out, model(x))
    assert psnr(build_backend("torch", model, bf16=True)(x), out).min() >= MIN_PSNR


def test_export_into_workdir_is_dynamic_and_leaves_no_temp_file(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model = _model("restormer_test").train()
    build_backend("onnxruntime", model, workdir=tmp_path / "work")
    assert model.training  # the export puts the caller's mode back
    assert [p.name for p in (tmp_path / "work").iterdir()] == ["model.onnx"]
    graph = onnx.load(str(tmp_path / "work" / "model.onnx")).graph
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in (*graph.input, *graph.output)]
    assert dims == [["batch", 3, "height", "width"]] * 2


def test_backend_errors_are_one_line_user_errors(monkeypatch):
    assert "torch" in available_backends() and set(available_backends()) <= set(BACKENDS)
    model = _model("restormer_test")
    with pytest.raises(UserError, match="unknown backend 'tensorrt'"):
        build_backend("tensorrt", model)
    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` fail
    assert "openvino" not in available_backends()
    with pytest.raises(UserError, match=r"backend openvino needs `pip install exda\[backends\]`"):
        build_backend("openvino", model)
    if "onnxruntime" in available_backends():
        with pytest.raises(UserError, match="bf16"):
            build_backend("onnxruntime", model, bf16=True)


def test_grid_pool_and_nearest_resize_equal_the_pytorch_ops():
    gen = torch.Generator().manual_seed(0)
    for h, w in [(1, 1), (3, 7), (5, 6), (37, 31), (53, 12), (82, 94)]:
        x = torch.randn(2, 3, h, w, generator=gen)
        for grid in (1, 3, 4):
            torch.testing.assert_close(grid_pool(x, grid), F.adaptive_avg_pool2d(x, grid), rtol=1e-6, atol=1e-6)
            cells = torch.randn(2, 3, grid, grid, generator=gen)
            assert torch.equal(nearest_resize(cells, (h, w)), F.interpolate(cells, size=(h, w), mode="nearest"))


@pytest.mark.parametrize("minimum", [0, 16])
def test_padding_equals_f_pad(minimum):
    for h, w in [(1, 1), (3, 12), (7, 9), (8, 16), (37, 53), (12, 5), (9, 24)]:
        x = torch.randn(1, 2, h, w)
        pad_h, pad_w = max(minimum, h + (-h) % 8) - h, max(minimum, w + (-w) % 8) - w
        mode = "reflect" if pad_h < h and pad_w < w else "replicate"
        assert torch.equal(pad_to_multiple(x, 8, minimum), F.pad(x, (0, pad_w, 0, pad_h), mode=mode))


@pytest.mark.slow
def test_export_cli_writes_a_dynamic_onnx_that_onnxruntime_runs(tmp_path, capsys):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from exda.cli import main
    from exda.engine.checkpoint import save_checkpoint

    torch.manual_seed(0)  # the shipped models' token reading, the first one
    model = exda.create_model("exda_restormer_test", token_upsample="nearest", token_softmax="raw", token_input="raw")
    ckpt = save_checkpoint(tmp_path / "run", "last", model=model.eval(), config={}, step=7, metrics={},
                           train_state=None)
    out = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(ckpt), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "exda_restormer_test (step 7)" in printed and "PSNR" in printed
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = _photo_crops(29, 41, 2)
    got = torch.from_numpy(session.run(None, {"image": x.numpy()})[0])
    with torch.no_grad():
        assert psnr(got.clamp(0, 1), model(x).clamp(0, 1)).min() >= MIN_PSNR
    # refuses to replace a file or to write a non-.onnx name, one line each
    assert main(["export", "--checkpoint", str(ckpt), str(out)]) == 2
    assert main(["export", "--checkpoint", str(ckpt), str(tmp_path / "model.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"exda export: error: {out} exists; pass --overwrite to replace it",
                   f"exda export: error: output of --format onnx must end in .onnx, got {tmp_path / 'model.pt'}"]


def test_export_cli_refuses_a_model_that_does_not_export_and_a_file_that_fails_its_check(tmp_path, capsys,
                                                                                         monkeypatch):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from exda.cli import main
    from exda.commands import export as export_command
    from exda.engine.checkpoint import save_checkpoint

    for name in ("adair_test", "restormer_test"):
        save_checkpoint(tmp_path / name, "last", model=_model(name), config={}, step=1, metrics={}, train_state=None)
    assert main(["export", "--checkpoint", str(tmp_path / "adair_test"), str(tmp_path / "adair.onnx")]) == 2
    monkeypatch.setattr(export_command, "MIN_AGREEMENT_DB", float("inf"))  # every file now fails its own check
    assert main(["export", "--checkpoint", str(tmp_path / "restormer_test"), str(tmp_path / "bad.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == ("exda export: error: adair_test does not export to ONNX: "
                      f"{model_traits('adair_test').onnx_unsupported}")
    bad = re.escape(str(tmp_path / "bad.onnx"))
    assert re.fullmatch(r"exda export: error: onnxruntime's output differs from PyTorch's fp32 one \(PSNR 1\d\d\.\d dB "
                        rf"on a 45x67 input, below inf dB\); {bad} not written", err[1])
    assert len(err) == 2 and not [p for p in tmp_path.iterdir() if p.is_file()]  # no file, no temp file left
