"""``exda serve`` through Gradio's own Python client: a real server on localhost, the shipped default model
(and ``restormer_test`` checkpoints for the checkpoint box)."""

from __future__ import annotations

import re
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

gradio = pytest.importorskip("gradio", reason="exda serve needs the serve extra (make installs it)")
gradio_client = pytest.importorskip("gradio_client")

from exda.data.io import load_image, save_image, to_tensor  # noqa: E402
from exda.data.samples import load_sample  # noqa: E402
from exda.degradations import DegradationSampler  # noqa: E402
from exda.errors import UserError  # noqa: E402
from exda.inference.restorer import RESTORERS  # noqa: E402
from exda.inference.serve import CHECKPOINT_REFUSED, Models, ServeOptions, Server  # noqa: E402
from exda.metrics import psnr  # noqa: E402


def photo(h: int, w: int) -> np.ndarray:
    """A real photo (scikit-image's astronaut) resized to h x w, as float32 H x W x 3."""
    x = torch.from_numpy(np.ascontiguousarray(load_sample("astronaut"))).permute(2, 0, 1)[None]
    return torch.nn.functional.interpolate(x, size=(h, w), mode="area")[0].permute(1, 2, 0).numpy()


@pytest.fixture(scope="module")
def checkpoints(make_checkpoint, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The allowed folder (three run folders, a text file, an empty folder, a symlink to a checkpoint
    outside); beside it, outside, a valid checkpoint."""
    root = tmp_path_factory.mktemp("checkpoints")
    allowed = root / "allowed"
    for name in ("run_a", "run_b", "run_c"):
        seed = len(name) + ord(name[-1])
        make_checkpoint(allowed / name, seed=seed, step=seed)
    (allowed / "notes.safetensors").write_text("not a checkpoint")
    (allowed / "empty").mkdir()
    outside = make_checkpoint(root / "outside", seed=9, step=9)
    (allowed / "link.safetensors").symlink_to(outside)
    return allowed


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, checkpoints: Path):
    """A live exda serve page with a 1 MiB memory budget (anything over 128 px is tiled), a checkpoint folder
    and a 1-megapixel fast lane."""
    torch.set_num_threads(1)
    options = ServeOptions(max_memory="1M", precision="fp32", allow_checkpoints=checkpoints)
    serve = Server(options, parent=tmp_path_factory.mktemp("serve"))
    serve.launch(prevent_thread_lock=True, quiet=True)
    try:
        yield serve
    finally:
        serve.close()


@pytest.fixture(scope="module")
def client(server, tmp_path_factory: pytest.TempPathFactory):
    downloads = tmp_path_factory.mktemp("downloads")  # not the client's default, the shared /tmp/gradio
    return gradio_client.Client(server.app.local_url, verbose=False, download_files=str(downloads))


def restore(client, path: Path, checkpoint: str = "") -> tuple:
    return client.predict(gradio_client.handle_file(str(path)), checkpoint, api_name="/restore")


def test_restore_returns_full_resolution_result_and_time(server, client, tmp_path: Path) -> None:
    src = tmp_path / "small.png"
    save_image(src, photo(48, 64))
    (before, after), download, info = restore(client, src)
    restored = load_image(download).pixels
    assert restored.shape == (48, 64, 3)
    assert load_image(before).pixels.shape == load_image(after).pixels.shape == (48, 64, 3)
    assert np.abs(load_image(before).pixels - load_image(src).pixels).max() < 1 / 255 + 1e-6
    assert re.search(r"64x48 restored in \d+\.\d\d s on cpu, whole image; default photo model .*; fast lane", info)
    assert 0.0 < float(np.abs(restored - load_image(src).pixels).mean()) < 0.2  # changed, still the photo
    files = server.folder.files  # the upload and the result live in the server's own folder
    assert list(files.glob("*/small.png")) and list(files.glob("request-*/small_restored.png"))


def test_large_upload_is_tiled_like_exda_restore(client, tmp_path: Path) -> None:
    src = tmp_path / "large.png"
    save_image(src, photo(150, 170))
    _, download, info = restore(client, src)
    assert "128 px tiles" in info
    assert load_image(download).pixels.shape == (150, 170, 3)


def _wait_until(condition, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_old_files_are_swept_while_the_server_runs(tmp_path: Path) -> None:
    serve = Server(ServeOptions(result_lifetime=0.5), parent=tmp_path)  # swept every second
    try:
        old = serve.folder.files / "request-old" / "photo_restored.png"
        old.parent.mkdir()
        old.write_bytes(b"x")
        assert _wait_until(lambda: not old.parent.exists(), 10)
    finally:
        serve.close()
    assert list(tmp_path.iterdir()) == []


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims ``width`` x ``height`` (a decompression bomb is no bigger on disk)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)))


class _RunsCode:
    def __reduce__(self) -> tuple:
        return (print, ("code from a pickled .npy ran",))


def _hostile_uploads(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a regex its one message must match)."""
    bomb = folder / "bomb.png"
    _png_header_only(bomb, 30000, 30000)
    empty = folder / "empty.png"
    empty.write_bytes(b"")
    text = folder / "notes.png"
    text.write_text("not an image")
    no_suffix = folder / "photo"
    save_image(folder / "photo.png", photo(20, 20))
    no_suffix.write_bytes((folder / "photo.png").read_bytes())
    all_nan = folder / "all_nan.npy"
    np.save(all_nan, np.full((16, 16), np.nan, np.float32))
    pickled = folder / "pickled.npy"
    np.save(pickled, np.array([_RunsCode()], dtype=object), allow_pickle=True)
    return {
        "bomb": (bomb, r"^bomb\.png is 30000x30000 = 900\.0 megapixels, more than this server accepts \(24 megapixels, "
                       r"exda serve --max-pixels\); restore it with `exda restore` on your own machine$"),
        "empty": (empty, r"empty\.png"),
        "text": (text, r"^cannot read image notes\.png: .*cannot identify image file 'notes\.png'$"),
        "no suffix": (no_suffix, r"unsupported image type ''.*: photo$"),
        "all NaN": (all_nan, r"all_nan\.npy: it holds no finite values"),
        "pickled": (pickled, r"^cannot read image pickled\.npy: ValueError: .*Python objects"),
    }


def test_hostile_uploads_get_one_message_without_server_paths(server, client, tmp_path: Path, capfd) -> None:
    root = str(server.folder.root)
    for name, (path, expected) in _hostile_uploads(tmp_path).items():
        with pytest.raises(gradio_client.exceptions.AppError) as caught:
            restore(client, path)
        message = str(caught.value)
        assert re.search(expected, message), (name, message)
        assert "\n" not in message and root not in message and not re.search(r"/\w+/", message), (name, message)
    assert "code from a pickled .npy ran" not in capfd.readouterr().out
    good = tmp_path / "good.png"
    save_image(good, photo(24, 40))
    assert restore(client, good)[2].startswith("40x24 restored in")  # still serving


def test_odd_names_and_nan_values_restore(client, tmp_path: Path) -> None:
    odd = tmp_path / ("ünï cødé (1) " + "x" * 150 + ".png")
    save_image(odd, photo(20, 28))
    _, download, info = restore(client, odd)
    assert Path(download).name.startswith("ünï cødé (1) x") and len(Path(download).name) < 120
    some_nan = tmp_path / "some_nan.npy"
    values = np.random.default_rng(0).random((12, 10, 3), dtype=np.float32)
    values[0, 0, 0], values[3, 4, 1] = np.nan, np.inf
    np.save(some_nan, values)
    _, download, info = restore(client, some_nan)
    assert "2 NaN/Inf values replaced" in info and load_image(download).pixels.shape == (12, 10, 3)


@pytest.mark.slow
def test_checkpoint_box_loads_only_inside_its_folder_with_one_refusal_message(server, client, checkpoints: Path,
                                                                              tmp_path: Path) -> None:
    src = tmp_path / "good.png"
    save_image(src, photo(24, 24))
    assert "checkpoint run_a/last.safetensors (restormer_test" in restore(client, src, "run_a")[2]
    refused = ["/etc/shadow", "/root", "/nonexistent/x.safetensors", "missing.safetensors", "notes.safetensors",
               "empty", "link.safetensors", "../outside", str(checkpoints.parent / "outside"), "run_a/../../outside",
               "x" * 5000, "a\x00b"]
    messages = set()
    for text in refused:
        with pytest.raises(gradio_client.exceptions.AppError) as caught:
            restore(client, src, text)
        messages.add(str(caught.value))
    assert messages == {CHECKPOINT_REFUSED}
    for name in ("run_a", "run_b", "run_c", "run_b"):
        restore(client, src, name)
    # the page's models come from the process's one bounded cache, the one exda.restore uses
    page = server.pages.models.for_request(src, "run_b").restorer
    assert page is RESTORERS.get(checkpoints / "run_b", precision="fp32", device="cpu")
    assert len(RESTORERS) <= RESTORERS.size


def test_without_a_checkpoint_folder_the_box_refuses_everything(tiny_checkpoint: Path, tmp_path: Path) -> None:
    models = Models(None, None, "fp32", torch.device("cpu"))
    ckpt = tiny_checkpoint
    for text in (str(ckpt), str(ckpt.parent), "/etc/shadow"):
        with pytest.raises(UserError) as caught:
            models.for_request(tmp_path / "a.png", text)
        assert str(caught.value) == CHECKPOINT_REFUSED


def test_a_large_image_holds_no_small_one_hostage_and_can_be_cancelled(server, client, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    save_image(big, photo(1200, 1000))  # 1.2 megapixels: the slow lane; ~80 tiles of 128 px
    small = tmp_path / "small.png"
    save_image(small, photo(32, 32))
    job = client.submit(gradio_client.handle_file(str(big)), "", api_name="/restore")
    assert _wait_until(lambda: server.lanes.slow.running is not None, 60)
    info = restore(client, small)[2]
    assert "fast lane" in info and server.lanes.slow.running is not None  # done while the large one runs
    job.cancel()
    assert _wait_until(lambda: server.lanes.slow.running is None, 10)  # stopped, not finished
    assert not list(server.folder.files.glob("request-*/big_restored.png"))


def test_the_time_limit_stops_a_restoration_with_one_message(server, client, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    save_image(big, photo(1200, 1000))
    server.pages.time_limit, default = 0.5, server.pages.time_limit
    try:
        with pytest.raises(gradio_client.exceptions.AppError, match=r"stopped after 0.5 s, this server's time limit"):
            restore(client, big)
    finally:
        server.pages.time_limit = default


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
