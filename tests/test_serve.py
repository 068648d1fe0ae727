"""``exda serve`` through Gradio's own Python client: a real server on localhost, the shipped default model."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

gradio = pytest.importorskip("gradio", reason="exda serve needs the serve extra (make installs it)")
gradio_client = pytest.importorskip("gradio_client")

from exda.data.io import load_image, save_image, to_tensor  # noqa: E402
from exda.data.samples import load_sample  # noqa: E402
from exda.degradations import DegradationSampler  # noqa: E402
from exda.engine.serve import create_app  # noqa: E402
from exda.metrics import psnr  # noqa: E402


def photo(h: int, w: int) -> np.ndarray:
    """A real photo (scikit-image's astronaut) resized to h x w, as float32 H x W x 3."""
    x = torch.from_numpy(np.ascontiguousarray(load_sample("astronaut"))).permute(2, 0, 1)[None]
    return torch.nn.functional.interpolate(x, size=(h, w), mode="area")[0].permute(1, 2, 0).numpy()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    """A live exda serve page with a 1 MiB memory budget, so anything over 128 px is tiled."""
    torch.set_num_threads(1)
    app = create_app(max_memory="1M", precision="fp32", workdir=tmp_path_factory.mktemp("serve"))
    app.launch(prevent_thread_lock=True, quiet=True)
    try:
        yield gradio_client.Client(app.local_url, verbose=False)
    finally:
        app.close()


def test_restore_returns_full_resolution_result_and_time(client, tmp_path: Path) -> None:
    src = tmp_path / "small.png"
    save_image(src, photo(48, 64))
    (before, after), download, info = client.predict(gradio_client.handle_file(str(src)), "", api_name="/restore")
    restored = load_image(download).pixels
    assert restored.shape == (48, 64, 3)
    assert load_image(before).pixels.shape == load_image(after).pixels.shape == (48, 64, 3)
    assert np.abs(load_image(before).pixels - load_image(src).pixels).max() < 1 / 255 + 1e-6
    assert re.search(r"64x48 restored in \d+\.\d\d s on cpu, whole image; default photo model", info)
    assert 0.0 < float(np.abs(restored - load_image(src).pixels).mean()) < 0.2  # changed, still the photo


def test_large_upload_is_tiled_like_exda_restore(client, tmp_path: Path) -> None:
    src = tmp_path / "large.png"
    save_image(src, photo(150, 170))
    _, download, info = client.predict(gradio_client.handle_file(str(src)), "", api_name="/restore")
    assert "128 px tiles" in info
    assert load_image(download).pixels.shape == (150, 170, 3)


def test_bad_upload_and_bad_checkpoint_show_one_clear_message(client, tmp_path: Path) -> None:
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(gradio_client.exceptions.AppError, match="notes.png"):
        client.predict(gradio_client.handle_file(str(bad)), "", api_name="/restore")
    good = tmp_path / "good.png"
    save_image(good, photo(32, 32))
    with pytest.raises(gradio_client.exceptions.AppError, match="missing.safetensors"):
        client.predict(gradio_client.handle_file(str(good)), str(tmp_path / "missing.safetensors"),
                       api_name="/restore")


def test_degrade_and_restore_scores_against_the_clean_image(client, tmp_path: Path) -> None:
    src = tmp_path / "clean.png"
    save_image(src, photo(40, 56))
    (degraded, restored), clean_view, table, download = client.predict(
        gradio_client.handle_file(str(src)), "underwater", 3, 1.0, "", api_name="/degrade_and_restore")
    clean = to_tensor(load_image(src).pixels)[None].double()
    expected, params = DegradationSampler("underwater", seed=3)(clean.float())
    assert f"`{params['water_type']}`" not in table and f'"water_type": "{params["water_type"]}"' in table
    shown_degraded = to_tensor(load_image(degraded).pixels)[None].double()
    assert float(psnr(shown_degraded, expected.double())) > 45  # the page shows this seed's degradation
    rows = dict(re.findall(r"\| (degraded|restored) \| ([\d.]+) \|", table))
    assert abs(float(rows["degraded"]) - float(psnr(expected.double(), clean))) < 0.05
    full = to_tensor(load_image(download).pixels)[None].double()
    assert abs(float(rows["restored"]) - float(psnr(full, clean))) < 0.01
    assert load_image(clean_view).pixels.shape == (40, 56, 3)


def test_dicom_upload_gets_the_default_medical_model(client) -> None:
    from pydicom.data import get_testdata_file

    (before, after), download, info = client.predict(
        gradio_client.handle_file(get_testdata_file("CT_small.dcm")), "", api_name="/restore")
    assert "default medical model" in info and "128x128" in info
    assert load_image(download).pixels.shape == (128, 128, 1)
