"""How far tiled restoration is from whole-image restoration, for a checkpoint or a fresh model.

    .venv/bin/python benchmarks/tiling_agreement.py --checkpoint runs/tiny_deg3 --tiles 128,256 --overlap 32

Restormer-style networks use image-global operations (channel attention over every pixel, ExDA's
global spatial token), so tiling changes their output; this measures by how much, on the held-out
sample photos degraded with a fixed seed. Prints a table (PSNR and max |difference| between tiled and
whole-image outputs, and each output's PSNR against the clean target) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from exda.data import build_dataset
from exda.inference.loader import load_network
from exda.inference.tiling import restore
from exda.metrics import psnr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--degradations", default="noise25,rain,haze")
    parser.add_argument("--tiles", default="128,256")
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--crop", type=int, default=384, help="centre crop so the whole image fits (px)")
    parser.add_argument("--out", default="benchmarks/results/tiling_agreement.json")
    args = parser.parse_args()

    model, info = load_network(args.checkpoint)
    data = build_dataset("synthetic", None, "test", degradations=args.degradations.split(","),
                         patch_size=args.crop, in_channels=model.in_channels)
    tiles = [int(t) for t in args.tiles.split(",")]
    rows = []
    for item in data:
        x, gt = item["lq"][None], item["gt"][None]
        with torch.inference_mode():
            whole = restore(model, x).clamp(0, 1)
            row = {"task": item["task"], "name": item["name"], "size": list(x.shape[-2:]),
                   "whole_psnr": psnr(whole, gt).item()}
            for t in tiles:
                tiled = restore(model, x, tile=t, overlap=args.overlap).clamp(0, 1)
                row[f"tile{t}_psnr"] = psnr(tiled, gt).item()
                row[f"tile{t}_vs_whole_psnr"] = psnr(tiled, whole).item()
                row[f"tile{t}_max_abs"] = (tiled - whole).abs().max().item()
        rows.append(row)

    print(f"checkpoint {info.path} ({info.arch}, step {info.step}), overlap {args.overlap}")
    head = " | ".join(f"tile {t}: vs whole dB / max abs / vs clean dB" for t in tiles)
    print(f"| task | image | whole vs clean dB | {head} |")
    print("|---|---|---:|" + "---:|" * len(tiles))
    for r in rows:
        cells = " | ".join(f"{r[f'tile{t}_vs_whole_psnr']:.1f} / {r[f'tile{t}_max_abs']:.3f} / {r[f'tile{t}_psnr']:.2f}"
                           for t in tiles)
        print(f"| {r['task']} | {r['name']} | {r['whole_psnr']:.2f} | {cells} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"checkpoint": str(info.path), "model": info.arch, "step": info.step,
            "overlap": args.overlap, "crop": args.crop, "command": "python " + " ".join(sys.argv)}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
