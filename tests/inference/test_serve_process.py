"""``exda serve`` as the command a user starts: it fails at start on a bad checkpoint or flag (one line,
exit 2, no folder made), and on SIGTERM it stops its work and leaves nothing behind (its own TMPDIR)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import exda
from exda.cli import main
from exda.data.io import save_image
from exda.inference.pretrained import default_checkpoint

gradio_client = pytest.importorskip("gradio_client", reason="exda serve needs the serve extra (make installs it)")


def _bad_checkpoints(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    (folder / "text.pth").write_text("hello")  # the shared loader raises a KeyError here, not a UserError
    (folder / "zero.safetensors").write_bytes(b"")
    weights = default_checkpoint("photo").read_bytes()
    (folder / "truncated.safetensors").write_bytes(weights[: len(weights) // 2])
    (folder / "empty_run").mkdir()
    return {name: folder / name for name in ("text.pth", "zero.safetensors", "truncated.safetensors", "empty_run",
                                             "missing.safetensors")}


@pytest.mark.parametrize("name", ["text.pth", "zero.safetensors", "truncated.safetensors", "empty_run",
                                  "missing.safetensors"])
def test_a_bad_checkpoint_fails_at_start_with_one_line(name: str, tmp_path: Path, capsys, monkeypatch) -> None:
    bad = _bad_checkpoints(tmp_path / "bad")[name]
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    assert main(["serve", "--checkpoint", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("exda serve: error: ") and err.count("\n") == 1 and name in err, err
    assert list(temp.iterdir()) == []  # no folder made


@pytest.mark.parametrize("flags, message", [
    (["--time-limit", "0"], "--time-limit must be a positive number of seconds"),
    (["--max-pixels", "many"], "--max-pixels must be a positive number of pixels"),
    (["--max-memory", "lots"], "--max-memory must be a size"),
    (["--allow-checkpoints", "/nonexistent/folder"], "--allow-checkpoints must name a folder"),
])
def test_bad_flags_fail_with_one_line(flags: list[str], message: str, capsys) -> None:
    assert main(["serve", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_page(url: str, proc: subprocess.Popen, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"exda serve exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    pytest.fail("exda serve did not answer in time")


@pytest.mark.slow
def test_sigterm_stops_the_work_and_removes_every_file(tmp_path: Path) -> None:
    temp, cwd = tmp_path / "temp", tmp_path / "cwd"
    temp.mkdir()
    cwd.mkdir()
    small, big = tmp_path / "small.png", tmp_path / "big.png"
    rng = np.random.default_rng(0)
    save_image(small, rng.random((32, 40, 3), dtype=np.float32))
    save_image(big, rng.random((1100, 1000, 3), dtype=np.float32))  # slow lane, ~80 tiles of 128 px
    port = _free_port()
    env = {**os.environ, "TMPDIR": str(temp), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(exda.__file__).resolve().parents[1]),
                                          os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "exda", "serve", "--port", str(port), "--max-memory", "1M",
                             "--precision", "fp32"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_for_page(url, proc, timeout=180)
        client = gradio_client.Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
        info = client.predict(gradio_client.handle_file(str(small)), "", api_name="/restore")[2]
        assert info.startswith("40x32 restored in")
        assert [p.name[:11] for p in temp.iterdir()] == ["exda-serve-"]  # everything in one folder
        job = client.submit(gradio_client.handle_file(str(big)), "", api_name="/restore")
        end = time.monotonic() + 60
        while job.status().code.name != "PROCESSING" and time.monotonic() < end:
            time.sleep(0.05)
        time.sleep(1.0)  # the large restoration is under way
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = proc.stdout.read()
    assert f"files in {temp}" in out
    assert list(temp.iterdir()) == [] and list(cwd.iterdir()) == []
