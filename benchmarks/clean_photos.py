"""Clean photos through a checkpoint: does a photo with nothing to restore come back unchanged (issue 19)?

    python benchmarks/clean_photos.py                      # the shipped photo model on the reserved eval photos
    python benchmarks/clean_photos.py --checkpoint A.safetensors B.safetensors [--photos DIR] [--max-side 512]
        ->  benchmarks/results/clean_photos.{json,md}, benchmarks/results/clean_photos_worst.jpg

The photos default to the reserved evaluation set (``python scripts/eval_photos.py`` writes it to
~/.cache/exda/eval-photos; never trained on). Each photo is downscaled (Lanczos) so its longer side is at most
``--max-side`` px (default 512: a 1024 px photo takes over a minute of one core here) and restored in fp32
through :class:`exda.inference.restorer.Restorer`, the path ``exda restore`` takes. Per photo, output against
the clean input: PSNR and SSIM (exda.metrics), the mean shift per channel (R, G, B; output minus input, in
8-bit levels) over all pixels, over green-dominant pixels (G above R and B by more than ``GREEN_MARGIN``) and
over saturated pixels (HSV saturation above 0.5), and the edge frame: PSNR of the outer ``RING`` px ring
against the interior's, and the ring's mean level difference (a dark frame is negative). The summary checks
the goals: mean PSNR >= 35 dB, none below 30 dB, every |channel shift| <= 1 level (overall, green, saturated),
the ring at most 1 dB worse than the interior. The picture shows each checkpoint's 4 worst photos (lowest
PSNR): input | output | difference x ``AMPLIFY`` around mid-grey.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from exda.atomic import atomic_write
from exda.data import io
from exda.data.io import to_tensor
from exda.engine.bench import require_checkpoints, run_benchmark
from exda.errors import UserError
from exda.figures import JPEG_QUALITY
from exda.inference.checkpoint_format import file_digest
from exda.inference.pretrained import default_checkpoint
from exda.inference.restorer import Restorer
from exda.metrics import psnr, ssim

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
EVAL_PHOTOS = Path("~/.cache/exda/eval-photos")
RING = 4  # px: the width of the edge frame measured
GREEN_MARGIN = 0.05  # G must exceed R and B by this (13 levels of 255) for a pixel to count as green
SATURATION = 0.5  # HSV saturation above which a pixel counts as saturated
MIN_PIXELS = 100  # a masked shift over fewer pixels is not reported (None)
PSNR_CAP = 100.0  # dB, for identical pixels
AMPLIFY = 10  # the picture's difference gain
GOALS = {"mean_psnr": 35.0, "min_psnr": 30.0, "max_shift": 1.0, "max_ring_gap_db": 1.0}
CHANNELS = ("R", "G", "B")


@dataclass
class PhotoResult:
    """The measures of one photo (shifts in 8-bit levels, output minus input; None: too few such pixels)."""

    name: str
    size: tuple[int, int]  # width, height as restored
    psnr: float
    ssim: float
    shift: tuple[float, float, float]
    green_fraction: float
    green_shift: tuple[float, float, float] | None
    saturated_fraction: float
    saturated_shift: tuple[float, float, float] | None
    ring_psnr: float
    interior_psnr: float
    ring_level: float  # mean level difference in the edge ring (all channels): a dark frame is negative


def masked_psnr(out: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, range 1) over the pixels where ``mask`` (H x W) is set; capped at PSNR_CAP."""
    mse = float(np.mean((out[mask] - ref[mask]) ** 2))
    return PSNR_CAP if mse <= 10 ** (-PSNR_CAP / 10) else 10 * float(np.log10(1 / mse))


def channel_shift(out: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None
                  ) -> tuple[float, float, float] | None:
    """Mean output minus input per channel over ``mask`` (all pixels when None), in 8-bit levels."""
    diff = (out - ref) if mask is None else (out - ref)[mask]
    if diff.reshape(-1, 3).shape[0] < MIN_PIXELS:
        return None
    r, g, b = (diff.reshape(-1, 3).mean(0) * 255).tolist()
    return round(r, 3), round(g, 3), round(b, 3)


def green_mask(ref: np.ndarray) -> np.ndarray:
    """Green-dominant pixels of an H x W x 3 image in [0, 1]: G above both R and B by GREEN_MARGIN."""
    r, g, b = ref[..., 0], ref[..., 1], ref[..., 2]
    return (g > r + GREEN_MARGIN) & (g > b + GREEN_MARGIN)


def saturated_mask(ref: np.ndarray) -> np.ndarray:
    """Pixels whose HSV saturation (max - min) / max exceeds SATURATION."""
    high, low = ref.max(-1), ref.min(-1)
    return (high - low) > SATURATION * np.maximum(high, 1e-6)


def ring_mask(height: int, width: int, ring: int = RING) -> np.ndarray:
    """True on the outer ``ring`` px of an H x W image."""
    mask = np.ones((height, width), bool)
    mask[ring:height - ring, ring:width - ring] = False
    return mask


def measure(name: str, out: np.ndarray, ref: np.ndarray) -> PhotoResult:
    """All measures of one restored photo ``out`` against its clean input ``ref`` (H x W x 3 float in [0, 1])."""
    out_t, ref_t = to_tensor(out).unsqueeze(0), to_tensor(ref).unsqueeze(0)
    ring = ring_mask(*ref.shape[:2])
    green, saturated = green_mask(ref), saturated_mask(ref)
    return PhotoResult(
        name=name, size=(ref.shape[1], ref.shape[0]),
        psnr=round(min(float(psnr(out_t, ref_t)), PSNR_CAP), 3), ssim=round(float(ssim(out_t, ref_t)), 5),
        shift=channel_shift(out, ref),
        green_fraction=round(float(green.mean()), 4), green_shift=channel_shift(out, ref, green),
        saturated_fraction=round(float(saturated.mean()), 4), saturated_shift=channel_shift(out, ref, saturated),
        ring_psnr=round(masked_psnr(out, ref, ring), 3), interior_psnr=round(masked_psnr(out, ref, ~ring), 3),
        ring_level=round(float((out - ref)[ring].mean() * 255), 3),
    )


def _worst_shift(rows: list[PhotoResult], field: str) -> tuple[float, str]:
    """The largest |channel shift| in ``field`` over all photos and channels, and where it is."""
    worst, where = 0.0, "-"
    for row in rows:
        shift = getattr(row, field)
        for channel, value in zip(CHANNELS, shift or (), strict=False):
            if abs(value) > abs(worst):
                worst, where = value, f"{row.name} {channel}"
    return worst, where


def summarise(rows: list[PhotoResult]) -> dict:
    """The goals, each with its figure, where the worst case is, and pass/fail."""
    lowest = min(rows, key=lambda row: row.psnr)
    gap = max(rows, key=lambda row: row.interior_psnr - row.ring_psnr)
    darkest = min(rows, key=lambda row: row.ring_level)
    goals = {
        "mean_psnr": {"value": round(statistics.fmean(row.psnr for row in rows), 3), "goal": ">= 35 dB"},
        "min_psnr": {"value": lowest.psnr, "where": lowest.name, "goal": ">= 30 dB"},
    }
    goals["mean_psnr"]["pass"] = goals["mean_psnr"]["value"] >= GOALS["mean_psnr"]
    goals["min_psnr"]["pass"] = lowest.psnr >= GOALS["min_psnr"]
    for field in ("shift", "green_shift", "saturated_shift"):
        worst, where = _worst_shift(rows, field)
        goals[f"max_{field}"] = {"value": round(worst, 3), "where": where, "goal": "|shift| <= 1 level",
                                 "pass": abs(worst) <= GOALS["max_shift"]}
    ring_gap = round(gap.interior_psnr - gap.ring_psnr, 3)
    goals["ring_gap_db"] = {"value": ring_gap, "where": gap.name, "goal": "ring <= 1 dB worse than interior",
                            "pass": ring_gap <= GOALS["max_ring_gap_db"]}
    goals["min_ring_level"] = {"value": darkest.ring_level, "where": darkest.name,
                               "goal": "reported (a dark frame is negative)"}
    return {"goals": goals, "mean_ssim": round(statistics.fmean(row.ssim for row in rows), 5),
            "all_pass": all(goal.get("pass", True) for goal in goals.values())}


def load_photos(folder: Path, max_side: int) -> dict[str, np.ndarray]:
    """{name: H x W x 3 float32 in [0, 1]}: the folder's photos at most ``max_side`` px (exda.data.io)."""
    hint = "build the eval photos with python scripts/eval_photos.py" if folder == EVAL_PHOTOS.expanduser() else ""
    return io.load_photos(folder, max_side, hint)


def evaluate(checkpoint: Path, photos: dict[str, np.ndarray]) -> tuple[dict, dict[str, np.ndarray]]:
    """One checkpoint over the photos (fp32): its record and its outputs."""
    restorer = Restorer.load(checkpoint, precision="fp32", device="cpu")
    if restorer.info.in_channels != 3:
        raise UserError(f"{checkpoint} is a {restorer.info.in_channels}-channel model; clean photos need an RGB one")
    start = time.perf_counter()
    rows, outputs = [], {}
    for name, ref in photos.items():
        out, _ = restorer.run(to_tensor(ref).unsqueeze(0))
        outputs[name] = out[0].permute(1, 2, 0).numpy()
        rows.append(measure(name, outputs[name], ref))
        print(f"  {name}: {rows[-1].psnr:.2f} dB", file=sys.stderr, flush=True)
    info = restorer.info
    return {"checkpoint": _shown(checkpoint), "label": _label(checkpoint), "sha256": file_digest(checkpoint)["sha256"],
            "model": info.arch, "step": info.step, "seconds": round(time.perf_counter() - start, 1),
            "summary": summarise(rows), "photos": [asdict(row) for row in rows]}, outputs


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _label(path: Path) -> str:
    """A short name: the shipped model's file stem, else the run folder and the step file."""
    return path.stem if path.parent.name == "weights" else f"{path.parent.name}/{path.stem}"


def to_markdown(record: dict) -> str:
    lines = [f"# Clean photos through the photo model (`{record['command']}`)", "",
             f"{record['photo_count']} photos from {record['photos']}, longer side <= {record['max_side']} px, fp32; "
             f"{record['machine']['cpu']}, {record['machine']['date']}. Shifts: output - input in 8-bit levels "
             f"(green: G > R, B + {GREEN_MARGIN}; saturated: HSV S > {SATURATION}); ring: the outer {RING} px.", "",
             "| checkpoint | step | mean PSNR (>= 35) | min PSNR (>= 30) | mean SSIM | max shift | max green shift "
             "| max saturated shift | ring gap dB (<= 1) | min ring level | all goals |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in record["checkpoints"]:
        goals = run["summary"]["goals"]
        cells = [_goal_cell(goals, key) for key in ("mean_psnr", "min_psnr")] + [f"{run['summary']['mean_ssim']:.4f}"]
        cells += [_goal_cell(goals, key) for key in
                  ("max_shift", "max_green_shift", "max_saturated_shift", "ring_gap_db", "min_ring_level")]
        verdict = "pass" if run["summary"]["all_pass"] else "**FAIL**"
        lines.append(f"| {run['label']} | {run['step']} | " + " | ".join(cells) + f" | {verdict} |")
    for run in record["checkpoints"]:
        lines += ["", f"## {run['label']} (step {run['step']}, {run['seconds']:.0f} s)", "",
                  "| photo | PSNR | SSIM | shift R,G,B | green % | green shift | saturated % | saturated shift "
                  "| ring / interior PSNR | ring level |", "|---|---|---|---|---|---|---|---|---|---|"]
        for row in sorted(run["photos"], key=lambda row: row["psnr"]):
            lines.append(f"| {row['name']} | {row['psnr']:.2f} | {row['ssim']:.4f} | {_triple(row['shift'])} | "
                         f"{100 * row['green_fraction']:.0f} | {_triple(row['green_shift'])} | "
                         f"{100 * row['saturated_fraction']:.0f} | {_triple(row['saturated_shift'])} | "
                         f"{row['ring_psnr']:.2f} / {row['interior_psnr']:.2f} | {row['ring_level']:+.2f} |")
    return "\n".join(lines) + "\n"


def _goal_cell(goals: dict, key: str) -> str:
    """One goal's table cell: its figure (signed for shifts and levels), where it is, and pass/fail."""
    goal = goals[key]
    value = f"{goal['value']:+.2f}" if "shift" in key or "level" in key else f"{goal['value']:.2f}"
    where = f" ({goal['where']})" if "where" in goal else ""
    verdict = {True: " pass", False: " **FAIL**"}[goal["pass"]] if "pass" in goal else ""
    return value + where + verdict


def _triple(shift: list[float] | None) -> str:
    return "-" if shift is None else ", ".join(f"{value:+.2f}" for value in shift)


def worst_grid(runs: list[tuple[str, list[dict], dict[str, np.ndarray]]], photos: dict[str, np.ndarray],
               path: Path, count: int = 4, cell: int = 320) -> None:
    """For each checkpoint, its ``count`` lowest-PSNR photos: input | output | difference x AMPLIFY + mid-grey."""
    rows = [(label, row, outputs[row["name"]]) for label, records, outputs in runs
            for row in sorted(records, key=lambda row: row["psnr"])[:count]]
    heights = []
    for _, row, _ in rows:
        width, height = row["size"]
        heights.append(round(height * cell / width) + 16)
    sheet = Image.new("RGB", (3 * cell, sum(heights)), "white")
    draw = ImageDraw.Draw(sheet)
    y = 0
    for (label, row, out), height in zip(rows, heights, strict=True):
        ref = photos[row["name"]]
        diff = np.clip(0.5 + AMPLIFY * (out - ref), 0, 1)
        for column, pixels in enumerate((ref, np.clip(out, 0, 1), diff)):
            image = Image.fromarray((pixels * 255 + 0.5).astype(np.uint8))
            sheet.paste(image.resize((cell, height - 16), Image.Resampling.LANCZOS), (column * cell, y + 16))
        draw.text((3, y + 2), f"{label}: {row['name']} {row['psnr']:.2f} dB, shift R,G,B {_triple(row['shift'])}, "
                  f"ring level {row['ring_level']:+.2f} | input | output | diff x{AMPLIFY}", fill="black")
        y += height
    atomic_write(path, lambda tmp: sheet.save(tmp, format="JPEG", quality=JPEG_QUALITY))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, nargs="+", metavar="PATH",
                        help="exda checkpoints (default: the shipped photo model)")
    parser.add_argument("--photos", type=Path, default=EVAL_PHOTOS,
                        help=f"folder of clean photos (default {EVAL_PHOTOS})")
    parser.add_argument("--max-side", type=int, default=512, help="downscale photos to this longer side (px)")
    parser.add_argument("--out", type=Path, default=RESULTS / "clean_photos.json",
                        help="where the JSON goes (the .md and _worst.jpg beside it)")
    args = parser.parse_args(argv)
    grid = args.out.with_name(args.out.stem + "_worst.jpg")
    return run_benchmark("clean_photos", argv, args.out,
                         lambda: check(args.checkpoint or [default_checkpoint("photo")], args.photos, args.max_side,
                                       grid), to_markdown)


def check(checkpoints: list[Path], photos_folder: Path, max_side: int, grid: Path) -> dict:
    """Each checkpoint on the clean photos; the worst photo of each run drawn into ``grid``."""
    require_checkpoints(checkpoints)
    photos = load_photos(photos_folder.expanduser(), max_side)
    record: dict = {"photos": str(photos_folder), "photo_count": len(photos), "max_side": max_side,
                    "goals": GOALS, "checkpoints": []}
    runs = []
    for checkpoint in checkpoints:
        print(f"clean_photos: {checkpoint}", file=sys.stderr)
        run, outputs = evaluate(checkpoint, photos)
        record["checkpoints"].append(run)
        runs.append((run["label"], run["photos"], outputs))
    worst_grid(runs, photos, grid)
    print(f"clean_photos: wrote {grid}", file=sys.stderr)
    return record


if __name__ == "__main__":
    sys.exit(main())
