"""Evaluation tables and `exda eval` / `exda restore` end to end with a tiny checkpointed model."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydicom.data import get_testdata_file
from skimage import data
from torch import nn

import exda
from exda.cli import main
from exda.data.io import image_suffix, load_image, save_image, to_tensor
from exda.data.samples import load_sample
from exda.engine.checkpoint import save_checkpoint
from exda.engine.evaluate import AVERAGE_ROW, evaluate_model, save_comparison_grid
from exda.errors import UserError
from exda.inference import pretrained
from exda.inference.checkpoint_format import resolve_checkpoint
from exda.inference.fast import optimize_for_inference
from exda.inference.loader import load_network
from exda.inference.pretrained import DEFAULT_MODELS, WEIGHTS_DIR, default_checkpoint, default_kind
from exda.inference.tiling import restore
from exda.metrics import psnr, ssim


def _photo_items() -> list[dict]:
    """Three real photo crops of odd sizes, noisy or darkened, under two task names."""
    g = torch.Generator().manual_seed(0)
    crops = [data.astronaut()[100:137, 200:231], data.chelsea()[80:121, 150:179], data.coffee()[60:97, 90:121]]
    items = []
    for i, crop in enumerate(crops):
        gt = to_tensor(crop.astype(np.float32) / 255.0)
        if i < 2:
            lq = (gt + 0.1 * torch.randn(gt.shape, generator=g)).clamp(0, 1)
            task = "noise"
        else:
            lq, task = gt * 0.5, "low_light"
        items.append({"lq": lq, "gt": gt, "task": task, "name": f"img{i}", "params": {}})
    return items


def test_evaluate_model_scores_each_task(tiny_checkpoint: Path, tmp_path: Path) -> None:
    model, _ = load_network(tiny_checkpoint)
    model.train()
    items = _photo_items()
    result = evaluate_model(model, items, keep_images=2)
    assert model.training  # the caller's mode is restored
    assert list(result.per_task) == ["noise", "low_light", AVERAGE_ROW]
    assert result.per_task["noise"]["count"] == 2 and result.per_task[AVERAGE_ROW]["count"] == 3
    lq, gt = items[0]["lq"][None], items[0]["gt"][None]
    with torch.inference_mode():
        restored = restore(model.eval(), lq).clamp(0, 1)  # as evaluate_model restores: mirrored margin
    first = result.per_image[0]
    assert first["input_psnr"] == pytest.approx(psnr(lq, gt).item())
    assert first["psnr"] == pytest.approx(psnr(restored, gt).item(), abs=1e-4)
    assert first["ssim"] == pytest.approx(ssim(restored, gt).item(), abs=1e-4)
    noise_mean = (result.per_image[0]["psnr"] + result.per_image[1]["psnr"]) / 2
    assert result.per_task["noise"]["psnr"] == pytest.approx(noise_mean)
    assert len(result.triplets) == 2 and result.triplets[1][0].shape == (3, 41, 29)

    result.to_csv(tmp_path / "r.csv")
    result.to_json(tmp_path / "r.json")
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert [r["task"] for r in rows] == ["noise", "low_light", AVERAGE_ROW]
    record = json.loads((tmp_path / "r.json").read_text())
    assert len(record["per_image"]) == 3 and record["settings"]["y_channel"] is False
    table = result.to_markdown()
    assert "| low_light |" in table and "Protocol:" in table
    assert not list(tmp_path.glob("*.tmp"))


def test_identity_model_scores_like_input_also_tiled() -> None:
    items = _photo_items()
    for tile in (None, 24):
        result = evaluate_model(nn.Identity(), items, tile=tile, tile_overlap=4, y_channel=True, crop_border=2)
        for row in result.per_image:
            assert row["psnr"] == pytest.approx(row["input_psnr"], abs=1e-6)
            assert row["ssim"] == pytest.approx(row["input_ssim"], abs=1e-6)


def test_medical_protocol_and_max_items() -> None:
    g = torch.Generator().manual_seed(1)
    gt = torch.rand(1, 33, 29, generator=g) * 0.5
    items = [{"lq": (gt + 0.05).clamp(0, 1), "gt": gt, "task": "CT", "name": "a", "params": {}}] * 3
    result = evaluate_model(nn.Identity(), items, ssim_gaussian=True, data_range_from_gt=True, max_items=2)
    assert result.per_task["CT"]["count"] == 2
    span = (gt.max() - gt.min()).item()
    expected = psnr(items[0]["lq"][None], gt[None], data_range=span).item()
    assert result.per_task["CT"]["input_psnr"] == pytest.approx(expected)


def test_metric_errors_name_the_image() -> None:
    g = torch.Generator().manual_seed(2)
    small = {"lq": torch.rand(3, 3, 5, generator=g), "gt": torch.rand(3, 3, 5, generator=g), "task": "noise",
             "name": "tiny", "params": {}}
    with pytest.raises(UserError, match=r"cannot score noise/tiny: SSIM needs images of at least 7x7, got 3x5"):
        evaluate_model(nn.Identity(), [small])
    with pytest.raises(UserError, match=r"cannot score noise/img0: crop_border 20 leaves nothing"):
        evaluate_model(nn.Identity(), _photo_items(), crop_border=20)


def test_comparison_grid_writes_png(tmp_path: Path) -> None:
    items = _photo_items()
    triplets = [(items[0]["lq"], items[0]["gt"] * 0.9, items[0]["gt"]), (items[2]["lq"][:1],) * 3]
    save_comparison_grid(triplets, tmp_path / "grid.png", labels=["rgb", "gray"])
    with Image.open(tmp_path / "grid.png") as im:
        assert im.format == "PNG" and im.width > 300 and im.height > 300


def _restore(argv: list[str]) -> int:
    return main(["restore", *argv])


def test_run_folder_means_last_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = exda.create_model("restormer_test")
    folder = tmp_path / "run" / "checkpoints"
    for tag in ("best", "last"):
        save_checkpoint(folder, tag, model=model, config={}, step=1, metrics={}, train_state=None)
    assert resolve_checkpoint(tmp_path / "run") == resolve_checkpoint(folder) == folder / "last.safetensors"
    (folder / "last.safetensors").unlink()
    with pytest.raises(UserError, match=r"no checkpoint \(last.safetensors\) .* explicitly: .*best.safetensors"):
        resolve_checkpoint(tmp_path / "run")


def test_restore_current_folder(tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "photos"
    save_image(folder / "a.png", np.random.default_rng(4).random((21, 19, 3)))
    monkeypatch.chdir(folder)
    assert _restore([".", "--checkpoint", str(tiny_checkpoint)]) == 0
    assert [p.name for p in (tmp_path / "photos_restored").iterdir()] == ["a.png"]


def test_restore_16bit_png_round_trip(tiny_checkpoint: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    src = tmp_path / "photo16.png"
    save_image(src, rng.random((37, 31, 3)), bit_depth=16)
    assert _restore([str(src), "--checkpoint", str(tiny_checkpoint), "--precision", "fp32"]) == 0
    out = load_image(tmp_path / "photo16_restored.png")
    assert out.bit_depth == 16 and out.pixels.shape == (37, 31, 3)
    model, _ = load_network(tiny_checkpoint)
    with torch.inference_mode():
        expected = restore(model, to_tensor(load_image(src).pixels)[None]).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    assert np.abs(out.pixels - expected).max() < 1e-4


def test_restore_rgba_keeps_alpha_and_tiles(tiny_checkpoint: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rgba = (rng.random((45, 70, 4)) * 255).astype(np.uint8)
    src = tmp_path / "logo.png"
    Image.fromarray(rgba, mode="RGBA").save(src)
    dst = tmp_path / "out.png"
    assert _restore([str(src), "-o", str(dst), "--checkpoint", str(tiny_checkpoint), "--tile", "32",
                     "--tile-overlap", "8"]) == 0
    with Image.open(dst) as im:
        assert im.mode == "RGBA" and im.size == (70, 45)
        np.testing.assert_array_equal(np.asarray(im)[:, :, 3], rgba[:, :, 3])


def test_restore_folder_gray_and_tiff(tiny_checkpoint: Path, tmp_path: Path) -> None:
    folder = tmp_path / "scans"
    rng = np.random.default_rng(2)
    save_image(folder / "a.tif", rng.random((29, 37, 1)), bit_depth=16)
    save_image(folder / "b.png", rng.random((31, 23, 1)))
    assert _restore([str(folder), "--checkpoint", str(tiny_checkpoint)]) == 0
    out = tmp_path / "scans_restored"
    assert sorted(p.name for p in out.iterdir()) == ["a.tif", "b.png"]
    tif, png = load_image(out / "a.tif"), load_image(out / "b.png")
    assert tif.pixels.shape == (29, 37, 1) and tif.bit_depth == 16
    assert png.pixels.shape == (31, 23, 1) and png.bit_depth == 8


def test_restore_rgb_into_gray_model_says_so(make_checkpoint, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = make_checkpoint(tmp_path / "run", in_channels=1)
    src = tmp_path / "rgb.png"
    save_image(src, np.random.default_rng(3).random((33, 27, 3)))
    assert _restore([str(src), "--checkpoint", str(ckpt)]) == 0
    assert "luma" in capsys.readouterr().err
    assert load_image(tmp_path / "rgb_restored.png").pixels.shape == (33, 27, 1)


def test_restore_refuses_to_overwrite_input(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    src = tmp_path / "x.png"
    save_image(src, np.zeros((20, 20, 3)))
    before = src.read_bytes()
    assert _restore([str(src), "-o", str(src), "--checkpoint", str(tiny_checkpoint)]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert src.read_bytes() == before
    assert _restore([str(tmp_path), "-o", str(tmp_path), "--checkpoint", str(tiny_checkpoint)]) == 2
    assert _restore([str(tmp_path / "missing.png"), "--checkpoint", str(tiny_checkpoint)]) == 2
    assert _restore([str(src), "--checkpoint", str(tiny_checkpoint), "--tile", "32", "--tile-overlap", "20"]) == 2


def _write_pairs(lq_dir: Path, gt_dir: Path, channels: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate([(37, 31), (29, 41)]):
        gt = rng.random((h, w, channels))
        save_image(gt_dir / f"im{i}.png", gt)
        save_image(lq_dir / f"im{i}.png", np.clip(gt + rng.normal(0, 0.1, gt.shape), 0, 1))


def test_eval_cli_paired_writes_results(tiny_checkpoint: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    root = tmp_path / "pairs"
    _write_pairs(root / "input", root / "target", channels=3, seed=4)
    argv = ["eval", "--checkpoint", str(tiny_checkpoint.parent), "--data", str(root), "--y-channel",
            "--crop-border", "2"]
    monkeypatch.chdir(tmp_path / "pairs")
    assert main(argv) == 0
    assert "| input PSNR / SSIM |" in capsys.readouterr().out
    out = tmp_path / "pairs" / "eval-pairs"  # the current folder, never the checkpoint's
    assert {p.name for p in out.iterdir()} == {"results.csv", "results.json", "comparison.png"}
    record = json.loads((out / "results.json").read_text())
    assert record["settings"]["layout"] == "paired" and record["settings"]["y_channel"] is True
    assert len(record["per_image"]) == 2
    lq = to_tensor(load_image(root / "input" / "im1.png").pixels)[None]
    gt = to_tensor(load_image(root / "target" / "im1.png").pixels)[None]
    row = next(r for r in record["per_image"] if r["name"] == "im1")
    assert row["input_psnr"] == pytest.approx(psnr(lq, gt, y_channel=True, crop_border=2).item(), abs=1e-6)


def test_eval_cli_medical_uses_amir_protocol(make_checkpoint, tmp_path: Path) -> None:
    ckpt = make_checkpoint(tmp_path / "run", in_channels=1)
    root = tmp_path / "amir"
    _write_pairs(root / "CT" / "validation" / "LQ", root / "CT" / "validation" / "HQ", channels=1, seed=5)
    out = tmp_path / "eval"
    assert main(["eval", "--checkpoint", str(ckpt), "--data", str(root), "--layout", "medical",
                 "--out", str(out), "--max-items", "1"]) == 0
    record = json.loads((out / "results.json").read_text())
    assert record["settings"]["ssim_gaussian"] is True and record["settings"]["data_range_from_gt"] is True
    assert list(record["per_task"]) == ["ct"] and record["per_task"]["ct"]["count"] == 1


def test_eval_cli_on_too_small_images_is_one_line(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    root = tmp_path / "small"
    rng = np.random.default_rng(6)
    for sub in ("input", "target"):
        save_image(root / sub / "speck.png", rng.random((3, 5, 3)))
    assert main(["eval", "--checkpoint", str(tiny_checkpoint), "--data", str(root), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "exda eval: error: cannot score paired/speck: SSIM needs images of at least 7x7, got 3x5"
    )


def test_eval_cli_user_errors(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    assert main(["eval", "--checkpoint", str(tiny_checkpoint), "--data", str(tmp_path / "nowhere")]) == 2
    assert main(["eval", "--checkpoint", str(tmp_path / "none.safetensors"), "--data", str(tmp_path)]) == 2
    assert main(["eval", "--checkpoint", str(tiny_checkpoint), "--layout", "paired"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("exda eval: error:") for line in errors)


# ------------------------------------------------------------------ shipped default models, --max-memory, --backend


def _shipped(kind: str) -> Path:
    return WEIGHTS_DIR / f"{DEFAULT_MODELS[kind]}.safetensors"


def _skip_without(kind: str) -> None:
    if not _shipped(kind).is_file():
        pytest.skip(f"the default {kind} model is not in exda/weights/ yet")


def _photo_png(path: Path, h: int, w: int) -> Path:
    """An h x w crop of a real photo as an 8-bit PNG (quality of the default model is not tested here)."""
    save_image(path, load_sample("astronaut")[90 : 90 + h, 190 : 190 + w])
    return path


def _ct_slice(folder: Path) -> Path:
    src = folder / "ct.dcm"
    shutil.copy(get_testdata_file("CT_small.dcm"), src)
    return src


def test_default_kind_follows_the_file_type() -> None:
    for suffix in (".dcm", ".nii", ".nii.gz"):
        assert default_kind(suffix) == "medical"
    for suffix in (".png", ".jpg", ".tif", ".npy"):
        assert default_kind(suffix) == "photo"
    assert default_kind(image_suffix("Scan.NII.GZ")) == "medical"


def test_default_checkpoint_user_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match=r"unknown default model 'xray' \(choose from photo, medical\)"):
        default_checkpoint("xray")
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(UserError, match=r"the default photo model is not installed \(.*\); pass --checkpoint"):
        default_checkpoint("photo")


@pytest.mark.parametrize(("kind", "channels"), [("photo", 3), ("medical", 1)])
def test_shipped_default_model_loads(kind: str, channels: int) -> None:
    _skip_without(kind)
    assert default_checkpoint(kind) == _shipped(kind)
    model, info = load_network(default_checkpoint(kind))
    assert model.in_channels == channels and info.arch.startswith("exda_")


def test_restore_without_checkpoint_uses_the_default_photo_model(tmp_path: Path, capsys) -> None:
    _skip_without("photo")
    src = _photo_png(tmp_path / "crop.png", 40, 52)
    line = r"exda restore: default photo model \(exda_\w+, [0-9.]+M parameters, step \d+; docs/model_card.md\)"
    for argv, dst in (([], tmp_path / "crop_restored.png"), (["--model", "photo", "-o", str(tmp_path / "b.png")],
                                                           tmp_path / "b.png")):
        assert _restore([str(src), *argv]) == 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and re.fullmatch(line, err[0])
        out = load_image(dst)
        assert out.pixels.shape == (40, 52, 3) and out.bit_depth == 8


def test_dicom_input_picks_the_medical_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    src = _ct_slice(tmp_path)
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path / "weights")  # whatever ships: none here
    assert _restore([str(src)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"exda restore: error: the default medical model is not installed "
        f"({tmp_path / 'weights' / 'exda_medical.safetensors'}); pass --checkpoint"
    ]
    assert not (tmp_path / "ct_restored.png").exists()


def test_model_medical_without_its_weights_is_one_line(tmp_path: Path, capsys) -> None:
    if _shipped("medical").is_file():
        pytest.skip("the default medical model is installed")
    src = _photo_png(tmp_path / "crop.png", 40, 52)
    assert _restore([str(src), "--model", "medical"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("exda restore: error: the default medical model is not installed")


def test_restore_dicom_with_the_default_medical_model(tmp_path: Path, capsys) -> None:
    _skip_without("medical")
    src = _ct_slice(tmp_path)
    assert _restore([str(src)]) == 0
    assert "exda restore: default medical model (" in capsys.readouterr().err
    assert load_image(tmp_path / "ct_restored.png").pixels.shape == (128, 128, 1)


def test_max_memory_tiles_automatically(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    src = _photo_png(tmp_path / "big.png", 133, 150)
    dst = tmp_path / "tiled.png"
    argv = [str(src), "-o", str(dst), "--checkpoint", str(tiny_checkpoint), "--max-memory", "1M", "--precision", "fp32"]
    assert _restore(argv) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("exda restore:")]
    assert len(notes) == 1 and re.fullmatch(
        r"exda restore: big.png \(150x133\) would need about [0-9.]+ MiB in one pass, more than "
        r"--max-memory 1.0 MiB; restoring in 128 px tiles", notes[0]
    )
    model = optimize_for_inference(load_network(tiny_checkpoint)[0], precision="fp32")
    expected = restore(model, to_tensor(load_image(src).pixels)[None], tile=128, overlap=32)[0].clamp(0, 1)
    out = load_image(dst).pixels
    assert out.shape == (133, 150, 3)
    assert np.abs(out - expected.permute(1, 2, 0).numpy()).max() <= 0.5 / 255 + 1e-5  # 8-bit rounding only
    # an overlap meant for larger tiles is narrowed to fit the automatic ones (it used to raise ValueError)
    assert _restore([*argv, "--tile-overlap", "80", "--overwrite"]) == 0


def test_max_memory_does_not_claim_tiles_for_images_smaller_than_a_tile(tiny_checkpoint: Path, tmp_path: Path,
                                                                         capsys) -> None:
    src = _photo_png(tmp_path / "small.png", 40, 52)
    assert _restore([str(src), "--checkpoint", str(tiny_checkpoint), "--max-memory", "1M"]) == 0
    assert "tiles" not in capsys.readouterr().err
    assert load_image(tmp_path / "small_restored.png").pixels.shape == (40, 52, 3)


@pytest.mark.parametrize("size", ["abc", "0", "-1G", "inf"])
def test_bad_max_memory_is_one_line(tiny_checkpoint: Path, tmp_path: Path, capsys, size: str) -> None:
    src = _photo_png(tmp_path / "crop.png", 40, 52)
    assert _restore([str(src), "--checkpoint", str(tiny_checkpoint), f"--max-memory={size}"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"exda restore: error: --max-memory must be a size like 2G, 512M or 3.5GiB, got '{size}'"
    ]
    assert not (tmp_path / "crop_restored.png").exists()


def test_restore_with_the_onnxruntime_backend(tiny_checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    src = _photo_png(tmp_path / "crop.png", 37, 45)
    dst = tmp_path / "ort.png"
    assert _restore([str(src), "-o", str(dst), "--checkpoint", str(tiny_checkpoint), "--backend", "onnxruntime"]) == 0
    model, _ = load_network(tiny_checkpoint)
    with torch.inference_mode():
        expected = restore(model, to_tensor(load_image(src).pixels)[None]).clamp(0, 1)
    assert psnr(to_tensor(load_image(dst).pixels)[None], expected).item() >= 45.0
