"""A 4000x3000 photo with the shipped default model, measured one tile at a time (a whole run is ~20 min).

    .venv/bin/python benchmarks/large_image_tile.py --baseline-code /path/to/main/checkout
        # -> benchmarks/results/large_image_tile.{json,md}

``exda restore`` with its defaults restores a 4000x3000 photo in tiles (benchmarks/results/large_image.md:
896 px, 32 px overlap); every tile has the same shape, so the whole run costs the tile count times one
tile's forward pass, plus reading, blending and writing. Each row runs in a fresh process (its own peak
resident memory): the default photo model on one 896 x 896 crop of the enlarged coffee photo, the first
call and the median of the timed ones, with this checkout's fast path and, given ``--baseline-code``,
with another checkout's (the code before this change), on the same machine in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from exda.engine.bench import cpu_model_name
from exda.inference.tiling import pass_plan

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
IMAGE = (4000, 3000)
TILE, OVERLAP = 896, 32

CHILD = """
import json, resource, statistics, sys, time
import numpy as np, torch
from PIL import Image
from exda.data.samples import load_sample
from exda.inference.pretrained import default_checkpoint
from exda.inference.restorer import Restorer
torch.set_num_threads(int(sys.argv[1]))
pixels = load_sample("coffee")
image = Image.fromarray(np.round(pixels * 255).astype(np.uint8)).resize((4000, 3000), Image.Resampling.LANCZOS)
crop = np.asarray(image, dtype=np.float32)[:896, :896] / 255
x = torch.from_numpy(crop).permute(2, 0, 1)[None].contiguous()
restorer = Restorer.load(default_checkpoint("photo"), device="cpu")
times = []
for _ in range(int(sys.argv[2])):
    start = time.perf_counter()
    restorer.model(x)
    times.append(time.perf_counter() - start)
print(json.dumps({"first_call_s": times[0], "tile_s": statistics.median(times[1:] or times),
                  "times_s": times, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "model": restorer.info.summary()}))
"""


def tile_row(code: Path, threads: int, calls: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code)}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(calls)], capture_output=True, text=True,
                          env=env, cwd=code)
    if proc.returncode != 0:
        raise SystemExit(f"tile row failed for {code}:\n{proc.stderr}")
    return json.loads(proc.stdout.splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-code", type=Path, default=None, help="a checkout of the code before the change")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--calls", type=int, default=2, help="forward passes per row (the first is reported apart)")
    parser.add_argument("--out", type=Path, default=RESULTS / "large_image_tile.json")
    args = parser.parse_args(argv)
    (_, _, th, tw), tiles = pass_plan((1, 3, IMAGE[1], IMAGE[0]), tile=TILE, overlap=OVERLAP)
    codes = {"this change": ROOT, **({"before": args.baseline_code} if args.baseline_code else {})}
    rows = []
    for label, code in codes.items():
        row = {"code": label, **tile_row(code.resolve(), args.threads, args.calls)}
        row["projected_model_s"] = tiles * row["tile_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"command": "python benchmarks/large_image_tile.py " + " ".join(argv or sys.argv[1:]),
              "cpu": cpu_model_name(), "threads": args.threads, "image": f"{IMAGE[0]}x{IMAGE[1]}",
              "tile": f"{tw}x{th}", "tiles": tiles, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"`{result['command']}` on {result['cpu']}, {args.threads} threads: the shipped default photo model "
             f"on one {tw}x{th} tile; a {result['image']} photo takes {tiles} such tiles.", "",
             "| code | first call s | tile s | model time for the photo (tiles x tile s) | peak RSS |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['code']} | {r['first_call_s']:.1f} | {r['tile_s']:.1f} | {r['projected_model_s']:.0f} s | "
              f"{r['peak_rss_bytes'] / 2**30:.2f} GiB |" for r in rows]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
