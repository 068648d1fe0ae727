"""`exda serve` under load, as users share it: concurrent clients, a large image beside small ones, exit.

    .venv/bin/python benchmarks/serve_load.py      # -> benchmarks/results/serve_load.{json,md}

Starts the real command (`python -m exda serve`) on a free port, in a fresh process whose TMPDIR is a
folder of this benchmark, then:

1. load: ``--clients`` gradio_client clients, each in its own thread, send ``--requests`` photos each at
   once (exda's sample photos resized to 256-768 px on the long side, PNG);
2. a large image (``--large``, default 2000x1500) is sent, and while it is restored ``--small-during``
   256 px photos are sent one after another and timed (goal: each under 5 s); three 256 px requests
   on the idle server before it give the baseline;
3. SIGTERM; what is left in the server's TMPDIR is listed (goal: nothing).

Every download is compared pixel for pixel with what `exda restore` writes for the same file (one
`exda restore FOLDER` run before the server starts, with the same ``--max-memory``, so both tile
alike). Peak memory is the resident memory of the server's process tree, sampled every 0.1 s from
/proc (Linux). Errors are requests that raised, or whose result differs in shape.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

RESULTS = Path(__file__).resolve().parent / "results"
GOAL_SMALL_LATENCY_S = 5.0
SMALL_SIDE = 256


def photo_file(name: str, long_side: int, path: Path, size: tuple[int, int] | None = None) -> Path:
    """Sample photo ``name`` resized (Lanczos) to ``long_side`` px on its long side, or to ``size`` (w, h)."""
    from exda.data.samples import load_sample

    pixels = load_sample(name)
    image = Image.fromarray(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)).convert("RGB")
    if size is None:
        scale = long_side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image.resize(size, Image.Resampling.LANCZOS).save(path)
    return path


class MemorySampler:
    """Peak resident memory of a process and all its descendants, sampled from /proc."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval = pid, interval
        self.peak = 0
        self.phase_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _tree_rss(root: int) -> int:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(entry))
        total, todo = 0, [root]
        while todo:
            pid = todo.pop()
            todo.extend(children.get(pid, []))
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            rss = self._tree_rss(self.pid)
            self.peak, self.phase_peak = max(self.peak, rss), max(self.phase_peak, rss)

    def start(self) -> None:
        self._thread.start()

    def next_phase(self) -> int:
        """The peak since the last call; starts a new phase."""
        peak, self.phase_peak = self.phase_peak, 0
        return peak

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_page(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"exda serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("exda serve did not answer in time")


def request(client, src: Path) -> dict:
    """One /restore call: wall time, the download, or the error."""
    import gradio_client

    start = time.perf_counter()
    try:
        _, download, info = client.predict(gradio_client.handle_file(str(src)), "", api_name="/restore")
        return {"input": src.name, "seconds": time.perf_counter() - start, "download": download, "info": info}
    except Exception as err:  # noqa: BLE001 - every failure is counted and reported
        return {"input": src.name, "seconds": time.perf_counter() - start, "error": f"{type(err).__name__}: {err}"}


def compare(row: dict, reference: Path) -> None:
    """Add ``equal`` (pixel for pixel with exda restore's file) and ``max_diff`` to a row."""
    from exda.data.io import load_image

    if "error" in row:
        return
    got, expected = load_image(row.pop("download")).pixels, load_image(reference / row["input"]).pixels
    if got.shape != expected.shape:
        row["error"] = f"shape {got.shape} != exda restore's {expected.shape}"
        return
    row["equal"] = bool(np.array_equal(got, expected))
    row["max_diff_8bit_steps"] = float(np.abs(got - expected).max() * 255)


def folder_listing(folder: Path) -> dict:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return {"entries": sorted(str(p.relative_to(folder)) for p in folder.iterdir())[:20],
            "files": len(files), "bytes": sum(p.stat().st_size for p in files)}


def summary(rows: list[dict]) -> dict:
    seconds = sorted(r["seconds"] for r in rows)
    return {"requests": len(rows), "errors": sum("error" in r for r in rows),
            "equal_to_exda_restore": sum(bool(r.get("equal")) for r in rows),
            "median_s": float(np.median(seconds)) if seconds else None, "max_s": max(seconds, default=None)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=5, help="requests per client")
    parser.add_argument("--large", default="2000x1500", metavar="WxH", help="the large image (over 1 megapixel)")
    parser.add_argument("--small-during", type=int, default=5, help="256 px requests timed while the large one runs")
    parser.add_argument("--max-memory", default="2G", help="--max-memory for exda serve and exda restore alike")
    parser.add_argument("--out", type=Path, default=RESULTS / "serve_load.json")
    args = parser.parse_args(argv)
    large_w, large_h = (int(v) for v in args.large.lower().split("x"))

    from exda.data.samples import sample_names
    from exda.engine.bench import cpu_model_name
    from exda.inference.memory import format_size

    work = Path(tempfile.mkdtemp(prefix="exda-serve-load-"))
    os.environ["GRADIO_TEMP_DIR"] = str(work / "client")  # gradio_client's own downloads stay in here
    import gradio_client

    try:
        inputs, reference, server_tmp = work / "inputs", work / "reference", work / "server-tmp"
        for folder in (inputs, server_tmp):
            folder.mkdir()
        names = sample_names("all")
        load_files: list[list[Path]] = [[] for _ in range(args.clients)]
        for k in range(args.clients * args.requests):  # long sides spread over 256-768 px
            c, r = divmod(k, args.requests)
            load_files[c].append(photo_file(names[k % len(names)], 256 + (k * 53) % 513, inputs / f"c{c}_r{r}.png"))
        small_files = [photo_file("astronaut", SMALL_SIDE, inputs / f"small{i}.png")
                       for i in range(3 + args.small_during)]
        large_file = photo_file("coffee", 0, inputs / f"large_{large_w}x{large_h}.png", size=(large_w, large_h))

        # this checkout's exda in both commands, whichever is installed
        repo = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)}
        env.pop("GRADIO_TEMP_DIR")
        print("exda restore on every input (the reference) ...", flush=True)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "exda", "restore", str(inputs), "-o", str(reference),
                        "--max-memory", args.max_memory], check=True, capture_output=True, env=env)
        reference_s = time.perf_counter() - start

        port = free_port()
        env["TMPDIR"] = str(server_tmp)
        proc = subprocess.Popen([sys.executable, "-m", "exda", "serve", "--port", str(port), "--max-memory",
                                 args.max_memory], env=env, cwd=work, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        memory = MemorySampler(proc.pid)
        try:
            url = f"http://127.0.0.1:{port}/"
            wait_for_page(url, proc)
            memory.start()
            memory.next_phase()

            print(f"load: {args.clients} clients x {args.requests} requests ...", flush=True)
            rows_by_client: list[list[dict]] = [[] for _ in range(args.clients)]

            def client_thread(index: int) -> None:
                client = gradio_client.Client(url, verbose=False, download_files=str(work / "client" / f"c{index}"))
                for src in load_files[index]:
                    rows_by_client[index].append(request(client, src))

            start = time.perf_counter()
            threads = [threading.Thread(target=client_thread, args=(i,)) for i in range(args.clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            load_wall = time.perf_counter() - start
            load_rows = [row for rows in rows_by_client for row in rows]
            load_peak = memory.next_phase()

            print(f"a {large_w}x{large_h} image with {SMALL_SIDE} px requests beside it ...", flush=True)
            client = gradio_client.Client(url, verbose=False, download_files=str(work / "client" / "small"))
            idle_rows = [request(client, src) for src in small_files[:3]]
            large_client = gradio_client.Client(url, verbose=False, download_files=str(work / "client" / "large"))
            large_start = time.perf_counter()
            large_job = large_client.submit(gradio_client.handle_file(str(large_file)), "", api_name="/restore")
            time.sleep(1.0)  # uploaded and started in the slow lane
            during_rows = []
            for src in small_files[3:]:
                row = request(client, src)
                row["large_still_running"] = not large_job.done()
                during_rows.append(row)
            try:
                _, download, info = large_job.result()
                large_row = {"input": large_file.name, "seconds": time.perf_counter() - large_start,
                             "download": download, "info": info}
            except Exception as err:  # noqa: BLE001
                large_row = {"input": large_file.name, "seconds": time.perf_counter() - large_start,
                             "error": f"{type(err).__name__}: {err}"}
            lanes_peak = memory.next_phase()
        finally:
            memory.stop()
            start = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            try:
                exit_code = proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                exit_code = proc.wait()
            exit_s = time.perf_counter() - start
        left = folder_listing(server_tmp)

        for row in [*load_rows, *idle_rows, *during_rows, large_row]:
            compare(row, reference)
        during_timed = [r for r in during_rows if r.get("large_still_running")]
        result = {
            "command": "python benchmarks/serve_load.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": {"cpu": cpu_model_name(), "threads": os.cpu_count(),
                        "load_average_1min_after": os.getloadavg()[0]},
            "settings": {"clients": args.clients, "requests_per_client": args.requests, "large": [large_w, large_h],
                         "max_memory": args.max_memory},
            "reference_exda_restore_s": reference_s,
            "load": {**summary(load_rows), "wall_s": load_wall, "peak_rss_bytes": load_peak},
            "small_idle": summary(idle_rows),
            "small_during_large": {**summary(during_timed), "sent": len(during_rows),
                                   "goal_max_s": GOAL_SMALL_LATENCY_S},
            "large": {**summary([large_row]), "peak_rss_bytes": lanes_peak},
            "peak_rss_bytes": memory.peak,
            "exit": {"signal": "SIGTERM", "exit_code": exit_code, "seconds": exit_s, "left_in_tmpdir": left},
            "rows": {"load": load_rows, "small_idle": idle_rows, "small_during_large": during_rows, "large": large_row},
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    s = result["small_during_large"]

    def fmt(seconds: float | None) -> str:
        return "-" if seconds is None else f"{seconds:.2f} s"

    large_outcome = (f"error: {large_row['error']}" if "error" in large_row
                     else "equal to exda restore" if large_row.get("equal") else "NOT equal to exda restore")
    table = [
        "| measure | value | goal |", "|---|---|---|",
        f"| load: {args.clients} clients x {args.requests} requests (256-768 px) | "
        f"{result['load']['errors']} errors, {result['load']['equal_to_exda_restore']} of {len(load_rows)} equal to "
        f"exda restore; median {fmt(result['load']['median_s'])}, max {fmt(result['load']['max_s'])}, "
        f"all done in {load_wall:.1f} s | 0 errors, all equal |",
        f"| {SMALL_SIDE} px on the idle server | median {fmt(result['small_idle']['median_s'])}, "
        f"max {fmt(result['small_idle']['max_s'])} | |",
        f"| {SMALL_SIDE} px while the {large_w}x{large_h} one runs ({s['requests']} of {s['sent']} timed while it "
        f"ran) | median {fmt(s['median_s'])}, max {fmt(s['max_s'])}; {s['errors']} errors, "
        f"{s['equal_to_exda_restore']} equal | max < {GOAL_SMALL_LATENCY_S:g} s |",
        f"| the {large_w}x{large_h} image | {fmt(result['large']['max_s'])}, {large_outcome} | |",
        f"| peak RSS of the server's process tree | {format_size(memory.peak)} (load {format_size(load_peak)}, "
        f"large + small {format_size(lanes_peak)}) | |",
        f"| after SIGTERM | exit {exit_code} in {exit_s:.1f} s; left in its TMPDIR: {left['files']} files, "
        f"{left['bytes']} bytes {left['entries'] or ''} | nothing left |",
    ]
    report = "\n".join(table)
    args.out.with_suffix(".md").write_text(f"`{result['command']}` on {result['machine']['cpu']} "
                                           f"({result['machine']['threads']} threads)\n\n{report}\n")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
