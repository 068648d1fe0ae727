"""The inference-path figures quoted in README.md and benchmarks/README.md must equal the committed results
files they come from (benchmarks/results/speed_paths.json, large_image_tile.json), as tests/test_docs.py
does for the other claims."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"


def rows() -> dict[str, dict]:
    result = json.loads((RESULTS / "speed_paths.json").read_text(encoding="utf-8"))
    return {f"{r['model']} {r['path']}": r for r in result["inference"]}


def seconds(key: str) -> str:
    return f"{rows()[key]['latency_s']:.2f}"


def speed_claims() -> tuple[str, ...]:
    r = rows()
    exda = "exda_restormer"
    compiled = r[f"{exda} compiled"]
    eager, loaded = r[f"{exda} eager"]["latency_s"], r[f"{exda} fast_loaded"]["latency_s"]
    compile_s = json.loads((RESULTS / "speed_paths.json").read_text(encoding="utf-8"))["compile_s"]
    return (seconds("restormer official"), seconds(f"{exda} eager"), seconds(f"{exda} fast"),
            seconds(f"{exda} compiled"),
            f"{compiled['speedup_vs_official']:.2f}", f"{eager / compiled['latency_s']:.2f}", f"{compile_s:.1f}",
            f"{compiled['artefact_s']:.2f}", seconds(f"{exda} openvino_f32"), f"{loaded:.2f}",
            f"{loaded / r[f'{exda} fast']['latency_s']:.2f}", f"{r[f'{exda} fast']['exda_overhead']:.3f}")


def tile_claims() -> tuple[str, ...]:
    result = json.loads((RESULTS / "large_image_tile.json").read_text(encoding="utf-8"))
    by_code = {r["code"]: r for r in result["rows"]}
    now, before = by_code["this change"], by_code["before"]
    return (str(result["tiles"]), f"{now['tile_s']:.1f}", f"{now['projected_model_s']:.0f}",
            f"{now['peak_rss_bytes'] / 2**30:.2f}", f"{before['tile_s']:.1f}", f"{before['projected_model_s']:.0f}")


SPEED = (r"Restormer code takes ([\d.]+) s, the fp32 eager path ([\d.]+) s, the fast eager path ([\d.]+) s, "
         r"the compiled path\s+([\d.]+) s \(([\d.]+)x faster than the official code, ([\d.]+)x faster than its own "
         r"fp32 eager path; compiled once in\s+([\d.]+) s, loaded in ([\d.]+) s\), OpenVINO fp32 ([\d.]+) s; with a "
         r"busy loop on one core the fast path takes\s+([\d.]+) s on the 1 idle core \(([\d.]+)x its idle time\)\..*?"
         r"fast path: ([\d.]+)x here\)")
TILE = (r"a 4000x3000 photo is (\d+) tiles of 896 px at ([\d.]+) s each: ([\d.]+) s of model time\s+at "
        r"([\d.]+) GiB peak RSS \(the code before this change: ([\d.]+) s per tile, ([\d.]+) s\)")

def load_claims() -> tuple[str, ...]:
    result = json.loads((RESULTS / "speed_load.json").read_text(encoding="utf-8"))
    by_path = {r["path"]: r["latency_s"] for r in result["inference"]}
    idle = by_path["fast"]
    return (f"{idle:.2f}", f"{by_path['fast_loaded']:.2f}", f"{by_path['fast_loaded'] / idle:.2f}",
            f"{by_path['fast_loaded_all_threads']:.2f}", f"{by_path['fast_loaded_all_threads'] / idle:.2f}")


LOAD = (r"idle ([\d.]+) s, beside the busy loop ([\d.]+) s on the idle core \(([\d.]+)x\) and\s+"
        r"([\d.]+) s on all threads \(([\d.]+)x\)")

Claim = tuple[str, str, Callable[[], tuple[str, ...]]]
CLAIMS: dict[str, Claim] = {
    "readme inference paths": ("README.md", SPEED, speed_claims),
    "readme large photo tiles": ("README.md", TILE, tile_claims),
    "benchmarks inference paths": ("benchmarks/README.md", SPEED, speed_claims),
    "benchmarks large photo tiles": ("benchmarks/README.md", TILE, tile_claims),
    "readme concurrent load": ("README.md", LOAD, load_claims),
    "benchmarks concurrent load": ("benchmarks/README.md", LOAD, load_claims),
}


@pytest.mark.parametrize("claim", list(CLAIMS))
def test_quoted_speed_figures_match_the_results_files(claim: str) -> None:
    doc, pattern, expected = CLAIMS[claim]
    match = re.search(pattern, (ROOT / doc).read_text(encoding="utf-8"), flags=re.DOTALL)
    assert match is not None, f"{doc}: the sentence of claim '{claim}' is gone or reworded; update CLAIMS"
    assert match.groups() == expected(), f"{doc}: '{claim}' quotes {match.groups()}, results say {expected()}"
