"""``exda demo``: the shipped default model against the degraded input and the best classical method on
the held-out sample photos (the comparison itself: :mod:`exda.engine.demo`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from exda.atomic import atomic_write
from exda.baselines import method_available
from exda.commands.options import ARCH_HELP
from exda.engine.demo import (
    DEMO_CROP,
    DEMO_DEGRADATIONS,
    DEMO_SEED,
    compare,
    conditions,
    held_out_photos,
    save_grid,
    to_markdown,
)
from exda.engine.evaluate import finite_or_none
from exda.inference.pretrained import default_checkpoint
from exda.inference.restorer import Restorer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("exda-demo"),
                        help="output folder for results.md, results.json, demo_grid.png (default exda-demo/)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a checkpoint, run folder or published .pth / .ckpt instead of the shipped default "
                             "photo model")
    parser.add_argument("--arch", default=None, metavar="NAME", help=ARCH_HELP)
    parser.add_argument("--crop", type=int, default=DEMO_CROP,
                        help=f"centre crop of each photo in px (default {DEMO_CROP}; 0 = whole photos)")


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    restorer = Restorer.load(args.checkpoint or default_checkpoint("photo"), arch=args.arch, device="cpu")
    info = restorer.info
    photos = held_out_photos(args.crop or None)
    print(f"exda demo: {info.arch} step {info.step} on {len(photos)} held-out photos "
          f"({', '.join(photos)}), {len(DEMO_DEGRADATIONS)} degradations, seed {DEMO_SEED}", file=sys.stderr)
    if not method_available("bm3d"):
        print("exda demo: BM3D not installed (`pip install exda[baselines]`, non-commercial licence); "
              "the other classical methods run", file=sys.stderr)
    rows, grid = compare(restorer.model, photos)
    table = conditions(photos, args.crop or None) + "\n\n" + to_markdown(rows)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    elapsed = time.perf_counter() - start
    record = {"model": info.arch, "checkpoint": str(info.path), "step": info.step,
              "photos": list(photos), "crop": args.crop or None, "seed": DEMO_SEED, "seconds": round(elapsed, 1),
              "rows": [asdict(r) for r in rows]}
    # the clean row's input and identity scores are infinite: null in JSON, as in exda eval's results.json
    text = json.dumps(finite_or_none(record), indent=2) + "\n"
    atomic_write(out / "results.json", lambda tmp: tmp.write_text(text))
    atomic_write(out / "results.md", lambda tmp: tmp.write_text(table + "\n"))
    save_grid(out / "demo_grid.png", grid, [r.baseline for r in rows])
    print(table)
    print(f"wrote results.md, results.json and demo_grid.png to {out} ({elapsed:.0f} s)")
    return 0

