"""Why does the photo model add red to green photos? Clean photos tinted on purpose, through a checkpoint.

    python benchmarks/tint_probe.py --checkpoint A.safetensors [B.safetensors ...] [--photos DIR] [--max-side 256]
        ->  benchmarks/results/tint_probe.{json,md}

Each clean photo (default: the photo pool's 9 held-out photos, ~/.cache/exda/photo-pool-v2/heldout) is
downscaled to at most ``--max-side`` px, multiplied per channel by each row of ``TINTS`` (R, G, B gains) and
restored in fp32 through :class:`exda.inference.restorer.Restorer`, as ``exda restore`` does. A tinted clean
photo is still clean: the right output is the input. The table gives the mean shift per channel (output minus
input, 8-bit levels, over all pixels and photos). The last row feeds the same photos under the underwater
degradation (seed 0) for comparison: the shift the model applies where adding red is right. A model that
adds red only to red-starved clean photos, and leaves magenta or yellow ones alone, has learned "short of
red means underwater" from the underwater pairs (docs/training.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from exda.data import io
from exda.data.io import to_tensor
from exda.degradations import get_degradation
from exda.engine.bench import require_checkpoints, run_benchmark
from exda.errors import UserError
from exda.inference.checkpoint_format import file_digest
from exda.inference.restorer import Restorer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PHOTOS = Path("~/.cache/exda/photo-pool-v2/heldout")
TINTS = {  # label -> R, G, B gains
    "none": (1.0, 1.0, 1.0),
    "R x 0.7": (0.7, 1.0, 1.0),
    "R x 0.5": (0.5, 1.0, 1.0),
    "R x 0.35": (0.35, 1.0, 1.0),
    "R x 0.5, B x 0.7 (green)": (0.5, 1.0, 0.7),
    "G x 0.6 (magenta)": (1.0, 0.6, 1.0),
    "B x 0.5 (yellow)": (1.0, 1.0, 0.5),
}
UNDERWATER = "underwater input (seed 0)"


def load_photos(folder: Path, max_side: int) -> dict[str, torch.Tensor]:
    """{name: 1 x 3 x H x W in [0, 1]}: the folder's photos at most ``max_side`` px (exda.data.io.load_photos)."""
    return {name: to_tensor(pixels).unsqueeze(0) for name, pixels in io.load_photos(folder, max_side).items()}


def probe(checkpoint: Path, photos: dict[str, torch.Tensor]) -> dict:
    """The mean R, G, B shift (levels) of ``checkpoint`` on every tint, and on underwater inputs."""
    restorer = Restorer.load(checkpoint, precision="fp32", device="cpu")
    if restorer.info.in_channels != 3:
        raise UserError(f"{checkpoint} is a {restorer.info.in_channels}-channel model; the probe needs an RGB one")
    start = time.perf_counter()

    def mean_shift(inputs: list[torch.Tensor]) -> list[float]:
        shifts = [(restorer.run(x)[0] - x).mean(dim=(0, 2, 3)) * 255 for x in inputs]
        return [round(float(v), 2) for v in torch.stack(shifts).mean(0)]

    rows = {}
    for label, gains in TINTS.items():
        scale = torch.tensor(gains).view(1, 3, 1, 1)
        rows[label] = mean_shift([x * scale for x in photos.values()])
        print(f"  {label}: {rows[label]}", file=sys.stderr, flush=True)
    underwater, generator = get_degradation("underwater"), torch.Generator().manual_seed(0)
    inputs = [underwater.apply(x, **underwater.sample_params(x, generator, 1.0)) for x in photos.values()]
    rows[UNDERWATER] = mean_shift(inputs)
    info = restorer.info
    return {"checkpoint": str(checkpoint), "sha256": file_digest(checkpoint)["sha256"], "model": info.arch,
            "step": info.step, "seconds": round(time.perf_counter() - start, 1), "shifts": rows}


def _label(checkpoint: Path) -> str:
    """``default_photo/last`` for a run folder's checkpoint (``<run>/checkpoints/last.safetensors``)."""
    folder = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    return f"{folder.name}/{checkpoint.stem}"


def to_markdown(record: dict) -> str:
    runs = record["checkpoints"]
    lines = [f"# Tinted clean photos through the photo model (`{record['command']}`)", "",
             f"{record['photo_count']} clean photos from {record['photos']}, longer side <= {record['max_side']} px, "
             f"fp32; {record['machine']['cpu']}, {record['machine']['date']}. Mean shift R, G, B (output - input, "
             "8-bit levels): a tinted clean photo should come back unchanged (0, 0, 0).", "",
             "| input | " + " | ".join(f"{_label(Path(run['checkpoint']))} (step {run['step']})"
                                     for run in runs) + " |",
             "|---|" + "---|" * len(runs)]
    for label in runs[0]["shifts"]:
        cells = [", ".join(f"{v:+.2f}" for v in run["shifts"][label]) for run in runs]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, nargs="+", required=True, metavar="PATH", help="exda checkpoints")
    parser.add_argument("--photos", type=Path, default=PHOTOS, help=f"folder of clean photos (default {PHOTOS})")
    parser.add_argument("--max-side", type=int, default=256, help="downscale photos to this longer side (px)")
    parser.add_argument("--out", type=Path, default=RESULTS / "tint_probe.json", help="the JSON (the .md beside it)")
    args = parser.parse_args(argv)
    return run_benchmark("tint_probe", argv, args.out,
                         lambda: probe_all(args.checkpoint, args.photos, args.max_side), to_markdown)


def probe_all(checkpoints: list[Path], photos_folder: Path, max_side: int) -> dict:
    require_checkpoints(checkpoints)
    photos = load_photos(photos_folder.expanduser(), max_side)
    record: dict = {"photos": str(photos_folder), "photo_count": len(photos), "max_side": max_side,
                    "tints": TINTS, "checkpoints": []}
    for checkpoint in checkpoints:
        print(f"tint_probe: {checkpoint}", file=sys.stderr)
        record["checkpoints"].append(probe(checkpoint, photos))
    return record


if __name__ == "__main__":
    sys.exit(main())
