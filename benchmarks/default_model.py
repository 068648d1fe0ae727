"""The shipped default models against the degraded input and the best classical method, per degradation.

Photo model: the held-out sample photos (coffee, flower, grace_hopper; never trained on) at full size,
every demo degradation at a fixed seed. Medical model: the held-out CT slice under each medical
degradation. Classical candidates per degradation: exda/baselines.py (BM3D when installed).

    .venv/bin/python benchmarks/default_model.py            # -> benchmarks/results/default_model.{json,md}

It also checks the "clean photo passes through" goal (PSNR of a clean held-out photo against itself).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from exda.atomic import atomic_write
from exda.baselines import method_available
from exda.data.samples import load_sample, sample_names
from exda.engine.demo import DEMO_DEGRADATIONS, DEMO_SEED, compare, save_grid, to_markdown
from exda.inference.fast import optimize_for_inference
from exda.inference.loader import load_network
from exda.inference.pretrained import default_checkpoint

MEDICAL_DEGRADATIONS = ("clean", "mri", "mri_undersample", "ct", "pet")
RESULTS = Path(__file__).resolve().parent / "results"


def section(kind: str, photos: dict[str, np.ndarray], degradations: tuple[str, ...], grid: Path) -> dict:
    net, info = load_network(default_checkpoint(kind))
    model = optimize_for_inference(net)
    start = time.perf_counter()
    rows, grid_rows = compare(model, photos, degradations, seed=DEMO_SEED)
    save_grid(grid, grid_rows, [r.baseline for r in rows])
    return {
        "model": info.arch, "kwargs": info.kwargs, "step": info.step,
        "parameters": sum(p.numel() for p in net.parameters()), "photos": list(photos),
        "sizes": {name: list(img.shape) for name, img in photos.items()},
        "seconds": round(time.perf_counter() - start, 1), "rows": [asdict(r) for r in rows],
        "table": to_markdown(rows), "grid": str(grid.relative_to(RESULTS.parent.parent)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "default_model.json")
    parser.add_argument("--skip-medical", action="store_true")
    args = parser.parse_args(argv)
    record: dict = {
        "command": "python benchmarks/default_model.py " + " ".join(argv or sys.argv[1:]),
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d"), "seed": DEMO_SEED, "bm3d": method_available("bm3d"),
    }
    photos = {name: load_sample(name) for name in sample_names("heldout", "natural")}
    record["photo"] = section("photo", photos, DEMO_DEGRADATIONS, RESULTS / "default_model_grid.png")
    print("## photo model\n" + record["photo"]["table"])
    if not args.skip_medical:
        slices = {name: load_sample(name) for name in sample_names("heldout", "medical")}
        record["medical"] = section("medical", slices, MEDICAL_DEGRADATIONS, RESULTS / "default_medical_grid.png")
        print("## medical model\n" + record["medical"]["table"])
    atomic_write(args.out, lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n"))
    atomic_write(args.out.with_suffix(".md"), lambda tmp: tmp.write_text(
        "\n\n".join(f"## {k} model\n\n{record[k]['table']}" for k in ("photo", "medical") if k in record) + "\n"))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
