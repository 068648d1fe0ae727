"""Bounded memory on large photos: `exda restore` with its defaults on 4096x4096 and 4000x3000 images.

    .venv/bin/python benchmarks/large_image.py            # -> benchmarks/results/large_image.{json,md}

Each row runs the real command line in a fresh process (no --tile, no --max-memory: the defaults a user
gets) and reads that process's peak resident memory (``ru_maxrss`` of the child), its wall time and the
auto-tiling line it printed. The inputs are real photos (skimage's astronaut and coffee) enlarged with
Lanczos resampling, written as PNG once into a temp folder. Goal (issue 7): the 4096x4096 photo restores
with the default model under 4 GB peak RSS, and nothing runs away without --tile.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from exda.data.samples import load_sample
from exda.engine.bench import cpu_model_name
from exda.inference.memory import default_budget, format_size

RESULTS = Path(__file__).resolve().parent / "results"
CASES = (("astronaut", 4096, 4096), ("coffee", 4000, 3000))
GOAL_BYTES = 4 * 10**9  # "under 4 GB"


def enlarged_photo(name: str, width: int, height: int, path: Path) -> Path:
    pixels = load_sample(name)  # H x W x 3 float in [0, 1]
    image = Image.fromarray(np.round(pixels * 255).astype(np.uint8))
    image.resize((width, height), Image.Resampling.LANCZOS).save(path)
    return path


def restore_row(src: Path, out: Path) -> dict:
    """Run `exda restore src -o out` in a fresh process; its wall time, peak RSS and stderr lines."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "exda", "restore", str(src), "-o", str(out)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        raise SystemExit(f"exda restore failed on {src.name}:\n{proc.stderr}")
    if peak_kib <= before:  # a smaller child than an earlier one: ru_maxrss is the maximum over children
        raise SystemExit("run each case in its own benchmark process to read its peak (see --case)")
    lines = [line for line in proc.stderr.splitlines() if line.startswith("exda restore:")]
    return {"input": src.name, "wall_s": wall, "load_average_1min_after": os.getloadavg()[0],
            "peak_rss_bytes": peak_kib * 1024, "lines": lines}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", type=int, default=None, help=argparse.SUPPRESS)  # internal: one case per process
    parser.add_argument("--out", type=Path, default=RESULTS / "large_image.json")
    args = parser.parse_args(argv)
    if args.case is not None:  # child: one case, JSON on stdout
        name, width, height = CASES[args.case]
        with tempfile.TemporaryDirectory(prefix="exda-large-") as tmp:
            src = enlarged_photo(name, width, height, Path(tmp) / f"{name}_{width}x{height}.png")
            row = restore_row(src, Path(tmp) / "restored.png")
            row.update(width=width, height=height, megapixels=width * height / 1e6)
        print(json.dumps(row))
        return 0
    rows = []
    for index in range(len(CASES)):
        proc = subprocess.run([sys.executable, __file__, "--case", str(index)], capture_output=True, text=True,
                              check=True)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    result = {
        "command": "python benchmarks/large_image.py",
        "machine": {"cpu": cpu_model_name(), "threads": os.cpu_count(), "default_budget_bytes": default_budget()},
        "goal_peak_rss_bytes": GOAL_BYTES,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    table = ["| image | size | wall time | peak RSS | under 4 GB | auto-tiling line |", "|---|---|---:|---:|---|---|"]
    for row in rows:
        line = "; ".join(row["lines"][1:]) or "(none)"  # the first line names the default model
        table.append(f"| {row['input']} | {row['width']}x{row['height']} ({row['megapixels']:.1f} MP) | "
                     f"{row['wall_s']:.0f} s | {format_size(row['peak_rss_bytes'])} | "
                     f"{'yes' if row['peak_rss_bytes'] < GOAL_BYTES else 'NO'} | {line} |")
    report = "\n".join(table)
    args.out.with_suffix(".md").write_text(f"`{result['command']}` on {result['machine']['cpu']}\n\n{report}\n")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
