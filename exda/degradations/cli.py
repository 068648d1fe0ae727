"""``exda degrade``: turn a folder of clean images into a reproducible paired benchmark.

Writes ``OUTPUT_DIR/input/<stem>.png`` (degraded), ``OUTPUT_DIR/target/<stem>.png`` (clean, as loaded)
and ``OUTPUT_DIR/manifest.json`` (degradation, seed, strength and every image's params).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from exda.atomic import atomic_write
from exda.data.io import image_stem, list_images, load_image, save_image, to_numpy, to_tensor
from exda.degradations.base import DegradationSampler, check_strength
from exda.degradations.registry import get_degradation, list_degradations
from exda.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input_dir", nargs="?", type=Path, help="folder of clean images (not recursive)")
    parser.add_argument("output_dir", nargs="?", type=Path, help="where input/, target/ and manifest.json go")
    parser.add_argument("--degradation", "-d", help="degradation or mixture name (see --list)")
    parser.add_argument("--seed", type=int, default=0, help="base seed; image i uses a seed derived from (seed, i)")
    parser.add_argument("--strength", type=float, default=1.0, help="severity scale, 1.0 = benchmark-typical")
    parser.add_argument("--list", action="store_true", help="list every degradation name with its description")


def image_seed(seed: int, index: int) -> int:
    """A well-mixed per-image seed from the run seed and the image's position in the sorted listing."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def run(args: argparse.Namespace) -> int:
    if args.list:
        table = list_degradations()
        width = max(map(len, table))
        for name, description in table.items():
            print(f"{name:<{width}}  {description}")
        return 0
    if args.input_dir is None or args.output_dir is None or not args.degradation:
        raise UserError("usage: exda degrade INPUT_DIR OUTPUT_DIR --degradation NAME (or --list)")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    degradation = get_degradation(args.degradation)
    strength = check_strength(args.strength)
    input_dir, output_dir = Path(args.input_dir), Path(args.output_dir)
    if not input_dir.is_dir():
        raise UserError(f"input folder not found: {input_dir}")
    _refuse_overlap(input_dir, output_dir)
    files = list_images(input_dir)
    if not files:
        raise UserError(f"no images (PNG, JPEG, TIFF, ...) found in {input_dir}")
    stems = [image_stem(path) for path in files]
    clashes = sorted({stem for stem in stems if stems.count(stem) > 1})
    if clashes:
        raise UserError(f"several input images share a name, outputs would collide: {', '.join(clashes)}")

    entries = []
    progress = tqdm(list(zip(files, stems, strict=True)), desc=f"degrade {degradation.name}", unit="image")
    for index, (path, stem) in enumerate(progress):
        image = load_image(path)
        seed = image_seed(args.seed, index)
        try:
            degraded, params = DegradationSampler(degradation, seed, strength)(to_tensor(image.pixels)[None])
        except UserError as err:
            raise UserError(f"{path.name}: {err}") from err
        save_image(output_dir / "input" / f"{stem}.png", to_numpy(degraded[0]), image.bit_depth, image.alpha)
        save_image(output_dir / "target" / f"{stem}.png", image.pixels, image.bit_depth, image.alpha)
        entries.append({"source": path.name, "input": f"input/{stem}.png", "target": f"target/{stem}.png",
                        "seed": seed, "params": params})
    manifest = {"degradation": degradation.name, "task": degradation.task, "seed": args.seed,
                "strength": strength, "images": entries}
    _write_json(output_dir / "manifest.json", manifest)
    print(f"wrote {len(entries)} pairs ({degradation.name}, seed {args.seed}, strength {strength}) to {output_dir}")
    return 0


def _refuse_overlap(input_dir: Path, output_dir: Path) -> None:
    """Never write into the input folder, nor make the input folder one of the output sub-folders."""
    src, dst = input_dir.resolve(), output_dir.resolve()
    if dst == src or src in dst.parents:
        raise UserError(f"refusing to write into the input folder: {output_dir} is inside {input_dir}")
    if src in (dst / "input", dst / "target"):
        raise UserError(f"refusing to overwrite the input folder {input_dir}: choose another OUTPUT_DIR")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8"))
