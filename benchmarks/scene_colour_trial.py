"""Does tinting clean training scenes (``data.scene_colour``) stop the photo model adding red to green photos,
and what does it cost? Short arms continued from the long run, each against the long run at the same step.

    python benchmarks/scene_colour_trial.py --arm LABEL CONTROL.safetensors ARM.safetensors [--arm ...]
        ->  benchmarks/results/scene_colour_trial.{json,md}

An arm is the long run's state at some step, trained on for a few hundred steps with a changed recipe; its
control is the long run itself at the arm's last step (same data order, same learning rate). For both, with
the EMA weights (what ships; EMA 0.999 carries only part of a short arm's change) and the raw weights (the
arm's full change, plus the noise of weights at a constant learning rate):

- validation PSNR per task: the run's 108 validation crops (9 held-out photos x 12 tasks, 192 px, seed 0);
- tinted clean photos: the mean R shift (8-bit levels) on the 9 held-out photos scaled to 256 px with red
  x 0.5 and x 0.35 (``benchmarks/tint_probe.py``'s probe);
- the green evaluation photos (``GREEN``, reserved, never trained on; ``scripts/eval_photos.py``) at 384 px:
  PSNR against themselves and R shift.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from exda.data.io import load_photo, to_tensor
from exda.data.layouts import build_dataset
from exda.engine.bench import require_checkpoints, run_benchmark
from exda.engine.evaluate import evaluate_model
from exda.errors import UserError
from exda.inference.checkpoint_format import file_digest
from exda.inference.loader import load_network

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
HELDOUT = Path("~/.cache/exda/photo-pool-v2/heldout")
EVAL_PHOTOS = Path("~/.cache/exda/eval-photos")
GREEN = ("mate_rain_drops", "mate_blinds", "mate_green_meadow", "pyiqa_garden_fountain", "mate_ladybird",
         "plasma_path", "lomiri_aitzgorri", "mate_garden")  # green % >= 28 in clean_photos.md
TASKS = ("clean", "noise15", "noise25", "noise50", "rain", "haze", "motion_blur", "low_light", "snow",
         "underwater", "jpeg", "random_mix")
RED_GAINS = (0.5, 0.35)
VALIDATION_CROPS = 108  # the long run's validation set: 9 held-out photos x 12 tasks


def photo(path: Path, side: int) -> torch.Tensor:
    """1 x 3 x H x W in [0, 1], at most ``side`` px, cropped to multiples of 8 (the network is called directly)."""
    pixels = load_photo(path, side)
    height, width = pixels.shape[0] // 8 * 8, pixels.shape[1] // 8 * 8
    return to_tensor(pixels[:height, :width]).unsqueeze(0)


def measure(checkpoint: Path, ema: bool, heldout: Path, tinted: list[torch.Tensor],
            green: dict[str, torch.Tensor]) -> dict:
    net, info = load_network(checkpoint, use_ema=ema)
    if info.ema != ema:
        raise UserError(f"{checkpoint} has no EMA weights")
    validation = build_dataset("synthetic", heldout, "val", degradations=TASKS, patch_size=192, seed=0,
                               length=VALIDATION_CROPS)
    per_task = {task: round(m["psnr"], 3) for task, m in evaluate_model(net, validation).per_task.items()}
    red = {}
    for gain in RED_GAINS:
        scale = torch.tensor([gain, 1.0, 1.0]).view(1, 3, 1, 1)
        red[f"R x {gain}"] = round(float(torch.stack(
            [(net(x * scale).clamp(0, 1) - x * scale)[:, 0].mean() * 255 for x in tinted]).mean()), 2)
    photos = {}
    for name, x in green.items():
        y = net(x).clamp(0, 1)
        photos[name] = {"psnr": round(float(-10 * torch.log10(((y - x) ** 2).mean())), 2),
                        "red_shift": round(float((y - x)[:, 0].mean() * 255), 2)}
    return {"step": info.step, "weights": "ema" if ema else "raw", "validation": per_task, "tinted_red_shift": red,
            "green_photos": photos}


def to_markdown(record: dict) -> str:
    lines = [f"# Scene colour trial (`{record['command']}`)", "",
             f"{record['machine']['cpu']}, {record['machine']['date']}. Validation: mean PSNR of the 108 validation "
             "crops (underwater and clean also alone). Tinted: mean R shift (levels) of the 9 held-out photos with "
             "red scaled. Green photos: the reserved green evaluation photos at 384 px, mean / min PSNR against "
             "themselves and the largest R shift. Right for a clean photo: no shift.", "",
             "| arm | model | weights | step | validation mean | clean | underwater | R shift, R x 0.5 | "
             "R shift, R x 0.35 | green photos mean / min PSNR | largest green R shift |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for arm in record["arms"]:
        for role in ("control", "arm"):
            for row in arm[role]["results"]:
                val, green = row["validation"], row["green_photos"].values()
                psnrs = [g["psnr"] for g in green]
                worst = max(green, key=lambda g: abs(g["red_shift"]))["red_shift"]
                lines.append(
                    f"| {arm['label']} | {role} | {row['weights']} | {row['step']} | {val['average']:.3f} | "
                    f"{val['clean']:.2f} | {val['underwater']:.2f} | {row['tinted_red_shift']['R x 0.5']:+.2f} | "
                    f"{row['tinted_red_shift']['R x 0.35']:+.2f} | {sum(psnrs) / len(psnrs):.2f} / {min(psnrs):.2f} | "
                    f"{worst:+.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arm", nargs=3, action="append", required=True, metavar=("LABEL", "CONTROL", "ARM"),
                        help="a label, the long run's checkpoint at the arm's step, the arm's checkpoint")
    parser.add_argument("--out", type=Path, default=RESULTS / "scene_colour_trial.json")
    args = parser.parse_args(argv)
    return run_benchmark("scene_colour_trial", argv, args.out, lambda: trial(args.arm), to_markdown)


def trial(arms: list[list[str]]) -> dict:
    """Each arm and its control, EMA and raw weights, on the validation crops and the tinted and green photos."""
    heldout, eval_photos = HELDOUT.expanduser(), EVAL_PHOTOS.expanduser()
    tinted = [photo(path, 256) for path in sorted(heldout.glob("*.png"))]
    missing = [name for name in GREEN if not (eval_photos / f"{name}.png").is_file()]
    if not tinted or missing:
        raise UserError(f"photos missing: {missing or heldout} (scripts/photo_pool.py, scripts/eval_photos.py)")
    green = {name: photo(eval_photos / f"{name}.png", 384) for name in GREEN}
    require_checkpoints([path for _, *paths in arms for path in paths])
    record: dict = {"arms": []}
    for label, control, arm in arms:
        entry: dict = {"label": label}
        for role, checkpoint in (("control", Path(control)), ("arm", Path(arm))):
            results = []
            for ema in (True, False):
                results.append(measure(checkpoint, ema, heldout, tinted, green))
                print(f"scene_colour_trial: {label} {role} {results[-1]['weights']}: "
                      f"{results[-1]['validation']['average']:.3f} dB", file=sys.stderr, flush=True)
            entry[role] = {"checkpoint": str(checkpoint), "sha256": file_digest(checkpoint)["sha256"],
                           "results": results}
        record["arms"].append(entry)
    return record


if __name__ == "__main__":
    sys.exit(main())
