"""``exda degrade``: turn a folder of clean images into a reproducible paired benchmark.

Writes ``OUTPUT_DIR/input/<stem>.png`` (degraded), ``OUTPUT_DIR/target/<stem>.png`` (clean, as loaded)
and ``OUTPUT_DIR/manifest.json`` (degradation, seed, strength and every image's params).
``--grid OUT.png`` instead draws one photo under every registered degradation, labelled (the medical
ones on a CT and an MRI slice): ``docs/degradations.png`` is made this way.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from exda.atomic import atomic_write
from exda.data.io import image_stem, list_images, load_image, save_image, to_numpy, to_tensor
from exda.data.samples import load_sample
from exda.data.transforms import match_channels
from exda.degradations.base import check_strength
from exda.degradations.registry import get_degradation, list_degradations
from exda.degradations.sampler import DegradationSampler
from exda.errors import UserError
from exda.figures import save_image_grid

GRID_PHOTO = "china"  # a sample photo with sky and distance, so haze and underwater show their depth
GRID_HEIGHT = 200
GRID_COLUMNS = 6
# medical degradations are drawn on a scan of their modality (PET's count thinning on the CT slice: no PET sample)
MEDICAL_GRID: dict[str, tuple[str, ...]] = {
    "ct": ("ct", "pet"),
    "mri": ("mri", "mri_noise", "mri_sr", "mri_undersample"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input_dir", nargs="?", type=Path, help="folder of clean images (not recursive)")
    parser.add_argument("output_dir", nargs="?", type=Path, help="where input/, target/ and manifest.json go")
    parser.add_argument("--degradation", "-d", help="degradation or mixture name (see --list)")
    parser.add_argument("--seed", type=int, default=0, help="base seed; image i uses a seed derived from (seed, i)")
    parser.add_argument("--strength", type=float, default=1.0, help="severity scale, 1.0 = benchmark-typical")
    parser.add_argument("--list", action="store_true", help="list every degradation name with its description")
    parser.add_argument("--grid", type=Path, default=None, metavar="OUT.png",
                        help="draw one photo under every degradation (labelled) into OUT.png and exit")
    parser.add_argument("--photo", default=GRID_PHOTO,
                        help=f"for --grid: a sample name or an image file (default {GRID_PHOTO})")
    parser.add_argument("--grid-height", type=int, default=GRID_HEIGHT, metavar="PX",
                        help=f"for --grid: panel height in pixels (default {GRID_HEIGHT})")


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
    if args.grid is not None:
        return _grid(args.grid, args.photo, args.seed, check_strength(args.strength), args.grid_height)
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


def _grid_image(pixels: np.ndarray, height: int) -> torch.Tensor:
    """1 x C x height x W (aspect kept), area-resampled."""
    x = to_tensor(pixels)[None]
    h, w = x.shape[-2:]
    return torch.nn.functional.interpolate(x, size=(height, max(1, round(w * height / h))), mode="area")


def _grid(out: Path, photo: str, seed: int, strength: float, height: int = GRID_HEIGHT) -> int:
    """Every registered degradation of one photo (medical ones of a CT and an MRI slice), same seed."""
    if seed < 0:
        raise UserError(f"--seed must be >= 0, got {seed}")
    if height < 32:
        raise UserError(f"--grid-height must be at least 32 px, got {height}")
    source = Path(photo)
    pixels = load_image(source).pixels if source.is_file() else load_sample(photo)
    label = source.name if source.is_file() else photo
    scans = {"ct": _grid_image(load_sample("ct_small"), height),
             "mri": _grid_image(load_sample("mri_head_s1045"), height)}
    x = _grid_image(match_channels(pixels, 3), height)
    medical_names = {name for names in MEDICAL_GRID.values() for name in names}
    singles, mixtures = [], []
    for name in list_degradations():
        deg = get_degradation(name)
        if name != "clean" and name not in medical_names:
            (mixtures if hasattr(deg, "parts") else singles).append((deg.stage, name))

    def panel(name: str, image: torch.Tensor) -> tuple[np.ndarray, str]:
        return to_numpy(DegradationSampler(name, seed, strength)(image)[0][0]), name

    natural = [(to_numpy(x[0]), f"input ({label})")] + [panel(name, x) for _, name in sorted(singles) + mixtures]
    rows = [natural[i:i + GRID_COLUMNS] for i in range(0, len(natural), GRID_COLUMNS)]
    rows.append([natural[0]] + [_scattering_panel(x, name, seed + k, strength)
                                for name, k in (("haze", 1), ("haze", 2), ("underwater", 1), ("underwater", 2),
                                                ("underwater", 3))])
    for modality, scan in scans.items():
        clean_scan = (to_numpy(scan[0]), f"input ({modality} slice)")
        rows.append([clean_scan] + [panel(name, scan) for name in MEDICAL_GRID[modality]])
    save_image_grid(rows, out)
    print(f"wrote {sum(map(len, rows))} panels (seed {seed}, strength {strength}) to {out}")
    return 0


def _scattering_panel(x: torch.Tensor, name: str, seed: int, strength: float) -> tuple[np.ndarray, str]:
    """Haze or underwater at another seed, captioned with what varies: the range and the water."""
    y, params = DegradationSampler(name, seed, strength)(x)
    if name == "underwater":
        caption = f"underwater s{seed}: Jerlov {params['water_type']}, {params['near']:.1f}-{params['far']:.1f} m"
    else:
        caption = f"{name} s{seed}: " + ", ".join(f"{k} {v:.2f}" for k, v in params.items() if isinstance(v, float))
    return to_numpy(y[0]), caption


def _refuse_overlap(input_dir: Path, output_dir: Path) -> None:
    """Never write into the input folder, nor make the input folder one of the output sub-folders."""
    src, dst = input_dir.resolve(), output_dir.resolve()
    if dst == src or src in dst.parents:
        raise UserError(f"refusing to write into the input folder: {output_dir} is inside {input_dir}")
    if src in (dst / "input", dst / "target"):
        raise UserError(f"refusing to overwrite the input folder {input_dir}: choose another OUTPUT_DIR")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8"))
