"""The inference-path figures quoted in README.md and benchmarks/README.md must equal the committed results
files they come from (benchmarks/results/speed_paths.json, speed_paths_xeon.json, attention_speed.json,
large_image_tile.json), as tests/test_docs.py does for the other claims."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"


def rows(file: str = "speed_paths.json") -> dict[str, dict]:
    result = json.loads((RESULTS / file).read_text(encoding="utf-8"))
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


def xeon_claims() -> tuple[str, ...]:
    r = rows("speed_paths_xeon.json")
    exda = "exda_restormer"
    eager, fast = r[f"{exda} eager"], r[f"{exda} fast"]
    return (f"{r['restormer official']['latency_s']:.2f}", f"{eager['latency_s']:.2f}", f"{fast['latency_s']:.2f}",
            f"{fast['speedup_vs_official']:.2f}", f"{eager['latency_s'] / fast['latency_s']:.2f}",
            f"{fast['exda_overhead']:.3f}")


def attention() -> dict[tuple[str, str, str], dict]:
    result = json.loads((RESULTS / "attention_speed.json").read_text(encoding="utf-8"))
    return {(r["model"], r["path"], r["code"]): r for r in result["rows"]}


def x(model: str, path: str) -> str:
    return f"{attention()[model, path, 'this']['speedup_vs_baseline']:.2f}"


def overheads() -> tuple[str, ...]:
    """ExDA's overhead on the fast path: full size before -> now, small before -> now."""
    a = attention()
    return tuple(f"{a[model, 'fast', code]['exda_overhead']:.3f}"
                 for model in ("exda_restormer", "exda_restormer_tiny") for code in ("baseline", "this"))


def attention_readme_claims() -> tuple[str, ...]:
    a = attention()
    full_before, full_now, small_before, small_now = overheads()
    return (f"{a['exda_restormer', 'eager', 'baseline']['latency_s']:.2f}",
            f"{a['exda_restormer', 'eager', 'this']['latency_s']:.2f}", x("exda_restormer", "eager"),
            x("restormer", "eager"), x("exda_restormer_tiny", "eager"), x("restormer_tiny", "eager"),
            *sorted((x("exda_restormer_tiny", "fast"), x("restormer_tiny", "fast"))),
            x("exda_restormer", "fast"), x("restormer", "fast"), full_now, small_now, full_before, small_before)


def attention_benchmarks_claims() -> tuple[str, ...]:
    eager = sorted(x(m, "eager") for m in ("exda_restormer", "restormer", "exda_restormer_tiny", "restormer_tiny"))
    full_before, full_now, small_before, small_now = overheads()
    return (eager[0], eager[-1], *sorted((x("exda_restormer_tiny", "fast"), x("restormer_tiny", "fast"))),
            x("exda_restormer", "fast"), x("restormer", "fast"), full_before, full_now, small_before, small_now)


def tile_claims() -> tuple[str, ...]:
    result = json.loads((RESULTS / "large_image_tile.json").read_text(encoding="utf-8"))
    by_code = {r["code"]: r for r in result["rows"]}
    now, before = by_code["this change"], by_code["before"]
    return (str(result["tiles"]), f"{now['tile_s']:.1f}", f"{now['projected_model_s']:.0f}",
            f"{now['peak_rss_bytes'] / 2**30:.2f}", f"{before['tile_s']:.1f}", f"{before['projected_model_s']:.0f}",
            f"{before['peak_rss_bytes'] / 2**30:.2f}")


SPEED = (r"Restormer code takes ([\d.]+) s, the fp32 eager path ([\d.]+) s, the fast eager path ([\d.]+) s, "
         r"the compiled path\s+([\d.]+) s \(([\d.]+)x faster than the official code, ([\d.]+)x faster than its own "
         r"fp32 eager path; compiled once in\s+([\d.]+) s, loaded in ([\d.]+) s\), OpenVINO fp32 ([\d.]+) s; with a "
         r"busy loop on one core the fast path takes\s+([\d.]+) s on the 1 idle core \(([\d.]+)x its idle time\)\..*?"
         r"fast path: ([\d.]+)x here\)")
TILE = (r"a 4000x3000 photo\s+is (\d+) tiles of 896 px at ([\d.]+) s each: ([\d.]+) s of model time\s+at "
        r"([\d.]+) GiB peak RSS \(the code before this change: ([\d.]+) s per tile, ([\d.]+) s, ([\d.]+) GiB\)")
XEON = (r"official code ([\d.]+) s,\s+(?:`exda_restormer`\s+)?fp32 eager ([\d.]+) s,\s+fast\s+path ([\d.]+) s "
        r"\(([\d.]+)x the official code, ([\d.]+)x its own eager path\),\s+ExDA overhead\s+([\d.]+)x on the fast path")
ATTENTION_README = (
    r"`exda_restormer` eager ([\d.]+) -> ([\d.]+) s \(([\d.]+)x\), `restormer` ([\d.]+)x, the default photo network's "
    r"ExDA form\s+([\d.]+)x and its plain form ([\d.]+)x; on the fast path ([\d.]+)-([\d.]+)x for the small networks "
    r"and level \(([\d.]+)x,\s+([\d.]+)x\) for the full-size ones\. ExDA's overhead there: ([\d.]+)x \(full\) and "
    r"([\d.]+)x \(small\), against ([\d.]+)x and\s+([\d.]+)x before")
ATTENTION_BENCHMARKS = (
    r"eager path ([\d.]+)-([\d.]+)x faster.*?fast path ([\d.]+)-([\d.]+)x for the small ones, level \(([\d.]+)x, "
    r"([\d.]+)x\)\s+for the full-size ones; ExDA's overhead on the fast path goes from ([\d.]+)x to ([\d.]+)x "
    r"\(full size\) and from ([\d.]+)x to ([\d.]+)x \(small\)")

def load_claims(file: str = "speed_load.json") -> tuple[str, ...]:
    result = json.loads((RESULTS / file).read_text(encoding="utf-8"))
    by_path = {r["path"]: r["latency_s"] for r in result["inference"]}
    idle = by_path["fast"]
    return (f"{idle:.2f}", f"{by_path['fast_loaded']:.2f}", f"{by_path['fast_loaded'] / idle:.2f}",
            f"{by_path['fast_loaded_all_threads']:.2f}", f"{by_path['fast_loaded_all_threads'] / idle:.2f}")


LOAD = (r"idle ([\d.]+) s, beside the busy loop ([\d.]+) s on the idle core \(([\d.]+)x\) and\s+"
        r"([\d.]+) s on all threads \(([\d.]+)x\)")
XEON_LOAD = (r"speed_load_xeon\.md`.*?idle\s+([\d.]+) s, beside\s+the busy loop ([\d.]+) s with threads on the "
             r"idle core \(([\d.]+)x\) and ([\d.]+) s on all threads \(([\d.]+)x\)")

Claim = tuple[str, str, Callable[[], tuple[str, ...]]]
CLAIMS: dict[str, Claim] = {
    "readme inference paths": ("README.md", SPEED, speed_claims),
    "readme large photo tiles": ("README.md", TILE, tile_claims),
    "benchmarks inference paths": ("benchmarks/README.md", SPEED, speed_claims),
    "benchmarks large photo tiles": ("benchmarks/README.md", TILE, tile_claims),
    "readme concurrent load": ("README.md", LOAD, load_claims),
    "readme xeon paths": ("README.md", XEON, xeon_claims),
    "readme xeon load": ("README.md", XEON_LOAD, lambda: load_claims("speed_load_xeon.json")),
    "benchmarks xeon load": ("benchmarks/README.md", XEON_LOAD, lambda: load_claims("speed_load_xeon.json")),
    "benchmarks xeon paths": ("benchmarks/README.md", XEON, xeon_claims),
    "readme attention norms": ("README.md", ATTENTION_README, attention_readme_claims),
    "benchmarks attention norms": ("benchmarks/README.md", ATTENTION_BENCHMARKS, attention_benchmarks_claims),
    "benchmarks concurrent load": ("benchmarks/README.md", LOAD, load_claims),
}


@pytest.mark.parametrize("claim", list(CLAIMS))
def test_quoted_speed_figures_match_the_results_files(claim: str) -> None:
    doc, pattern, expected = CLAIMS[claim]
    text = re.sub(r"\s+", " ", (ROOT / doc).read_text(encoding="utf-8"))  # a reflowed paragraph still matches
    match = re.search(pattern, text, flags=re.DOTALL)
    assert match is not None, f"{doc}: the sentence of claim '{claim}' is gone or reworded; update CLAIMS"
    assert match.groups() == expected(), f"{doc}: '{claim}' quotes {match.groups()}, results say {expected()}"
