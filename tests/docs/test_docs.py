"""The figures quoted in README.md and the docs must equal the committed results files they come from.

Each claim is a pattern in a document and the strings the results file says it must show. When a
benchmark is re-run (or `exda models --json benchmarks/results/models.json` after a model change), this
test names every sentence that went stale. Any ExDA overhead written as +N.NN% must be one of the claims.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from exda import __version__
from exda.cli import main

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"


def load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def model(name: str) -> dict:
    rows = {row["model"]: row for row in load("models.json")["rows"]}
    return rows[name]


def pct(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


def count(n: int) -> str:
    return f"{n:,}"


def overheads(name: str) -> tuple[str, str]:
    """ExDA's parameter and FLOP overhead (%) over its backbone, as quoted."""
    row = model(name)
    return pct(row["params_overhead_pct"]), pct(row["flops_overhead_pct"])


def gflops(row: dict) -> str:
    return f"{row['flops'] / 1e9:.1f}"


def speed_rows(name: str) -> list[dict]:
    return load(name)["rows"]


def ratio(rows: list[dict], backbone: str, precision: str) -> str:
    return next(f"{r['ratio']:.2f}" for r in rows if r["backbone"] == backbone and r["precision"] == precision)


def peak_memory_range() -> tuple[str, str]:
    """Smallest and largest peak-memory increase (%) of ExDA over its backbone, H200 training step."""
    changes = [100 * (r["variant_peak_gib"] / r["backbone_peak_gib"] - 1) for r in speed_rows("model_speed_h200.json")]
    return f"{min(changes):.0f}", f"{max(changes):.0f}"


def cpu_ratio_range() -> tuple[str, str]:
    ratios = [r["ratio"] for r in speed_rows("model_speed_cpu.json")]
    return f"{min(ratios):.2f}", f"{max(ratios):.2f}"


def bf16_range(name: str) -> tuple[str, str]:
    ratios = [r["ratio"] for r in speed_rows(name) if r["precision"] == "bf16"]
    return f"{min(ratios):.2f}", f"{max(ratios):.2f}"


def tiling_range(tile: int) -> tuple[str, str]:
    values = [r[f"tile{tile}_vs_whole_psnr"] for r in load("tiling_agreement.json")["rows"]]
    return f"{min(values):.0f}", f"{max(values):.0f}"


def h200_ratios() -> tuple[str, ...]:
    rows = speed_rows("model_speed_h200.json")
    return tuple(ratio(rows, b, p) for b in ("restormer", "promptir") for p in ("fp32", "bf16"))


def eval_scores(task: str) -> tuple[str, str]:
    """Input and restored PSNR of one task in the default model's gallery run (`exda eval`)."""
    row = json.loads((RESULTS / "default_model_eval" / "results.json").read_text())["per_task"][task]
    return f"{row['input_psnr']:.2f}", f"{row['psnr']:.2f}"


def score(psnr: float, ssim: float) -> str:
    return "identical" if math.isinf(psnr) else f"{psnr:.2f} / {ssim:.4f}"


def default_model_rows() -> list[tuple[str, ...]]:
    out = []
    for r in load("default_model.json")["photo"]["rows"]:
        delta = "" if math.isinf(r["baseline_psnr"]) else f"{r['restored_psnr'] - r['baseline_psnr']:+.2f} dB"
        out.append((r["degradation"], score(r["input_psnr"], r["input_ssim"]),
                    score(r["restored_psnr"], r["restored_ssim"]), r["baseline"],
                    score(r["baseline_psnr"], r["baseline_ssim"]), delta))
    return out


def large_image_claims() -> tuple[str, ...]:
    """Wall time (s) and peak RSS (GiB, 1 decimal) of the 4096x4096 and 4000x3000 rows, and the auto-tile size."""
    rows = load("large_image.json")["rows"]
    tiles = {re.search(r"restoring in (\d+) px tiles", " ".join(r["lines"]))[1] for r in rows}
    assert len(tiles) == 1, tiles
    return (*(f for r in rows for f in (f"{r['wall_s']:.0f}", f"{r['peak_rss_bytes'] / 2**30:.1f}")), tiles.pop())


def reliability_claims() -> tuple[str, ...]:
    """The README's Reliability figures, from benchmarks/results/robustness.json."""
    result = load("robustness.json")
    inputs, folder, kill = result["inputs"], result["mixed_folder"], result["kill"]
    restored, failed = re.match(r"(\d+) restored, (\d+) failed", folder["summary"]).groups()
    figures = (inputs["kinds"], inputs["ok"], inputs["kinds"], inputs["tracebacks"] + folder["tracebacks"],
               folder["files"], restored, failed, folder["exit"], folder["good_outputs_lost"],
               folder["inputs_overwritten"], kill["kills"], kill["kills_during_checkpoint_write"],
               kill["resumes_succeeded"], kill["resumes"], kill["complete_checkpoints_lost"],
               kill["damaged_checkpoints"], kill["damaged_checkpoints_detected"])
    return tuple(str(x) for x in figures)


def bad_checkpoint_claims() -> tuple[str, ...]:
    """The README's bad-checkpoint figures, from benchmarks/results/robustness.json."""
    found = load("robustness.json")["checkpoints"]
    return tuple(str(x) for x in (found["kinds"], found["ok"], found["pairs"], found["tracebacks"]))


def token_reading(name: str, net: str = "init") -> dict:
    """One reading's row of benchmarks/results/token_options.json, per size: {64: {...}, 128: ..., 512: ...}."""
    row = load("token_options.json")["readings"][name]
    return {size: row[f"{net}_{size}"] for size in (64, 128, 512)} | {"row": row}


def token_option_claims() -> tuple[str, ...]:
    first, standardized = token_reading("row (first reading)"), token_reading("row standardized")
    columns, area = token_reading("columns"), token_reading("columns area")
    sizes = (64, 128, 512)
    return (
        f"{100 * (1 - first['row']['misaligned_sizes']):.0f}",
        f"{100 * token_reading('row bilinear')['row']['border_tv_share']:.0f}",
        f"{first[64]['entropy']:.4f}", f"{first[64]['max_weight']:.3f}",
        f"{token_reading('row (first reading)', 'shipped')[64]['entropy']:.4f}",
        f"{max(100 * first[s]['content_share'] for s in sizes):.1f}",
        f"{min(100 * first[s]['residual_share'] for s in sizes):.0f}",
        f"{max(100 * first[s]['residual_share'] for s in sizes):.0f}",
        f"{min(standardized[s]['entropy'] for s in (64, 512)):.2f}",
        f"{max(standardized[s]['entropy'] for s in (64, 512)):.2f}",
        f"{min(standardized[s]['max_weight'] for s in (64, 512)):.2f}",
        f"{max(standardized[s]['max_weight'] for s in (64, 512)):.2f}",
        f"{min(100 * standardized[s]['content_share'] for s in sizes):.0f}",
        f"{max(100 * standardized[s]['content_share'] for s in sizes):.0f}",
        f"{100 * columns[64]['residual_share']:.2f}", f"{100 * columns[512]['residual_share']:.2f}",
        *(f"{100 * area[s]['residual_share']:.1f}" for s in sizes),
    )


SHARES = r"([\d.]+)% / ([\d.]+)% \| ([\d.]+)% / ([\d.]+)% \| "  # residual and content share, 64 / 512 px


def experiments_token_rows() -> tuple[str, ...]:
    out: list[str] = []
    for name, two_entropies in (("row (first reading)", False), ("row standardized", True),
                                ("row normalized input", True), ("columns", False), ("columns area", False)):
        r = token_reading(name)
        out += [f"{100 * r[s][key]:.2f}" for key in ("residual_share", "content_share") for s in (64, 512)]
        out += [f"{r[s]['entropy']:.4f}" for s in ((64, 512) if two_entropies else (64,))]
    return tuple(out)


def design_table_row(name: str) -> tuple[str, ...]:
    row = model(name)
    return count(row["parameters"]), gflops(row)


# (document, pattern, expected groups). Patterns allow line breaks wherever the text may wrap.
Claim = tuple[str, str, Callable[[], tuple[str, ...]]]
CLAIMS: dict[str, Claim] = {
    "readme backbone parameters": (
        "README.md", r"Restormer \(([\d,]+) parameters\) and PromptIR \(([\d,]+)\)",
        lambda: (count(model("restormer")["parameters"]), count(model("promptir")["parameters"]))),
    "readme ExDA overheads": (
        "README.md", r"ExDA adds \+([\d.]+)% parameters and \+([\d.]+)% FLOPs to Restormer\s+"
                     r"\(\+([\d.]+)% / \+([\d.]+)% to PromptIR\)",
        lambda: overheads("exda_restormer") + overheads("exda_promptir")),
    "readme wall-clock": (
        "README.md", r"takes ([\d.]+)x Restormer's time in fp32 and ([\d.]+)x in bf16, with\s+"
                     r"\+(\d+)% \(fp32\) to \+(\d+)% \(bf16\) peak memory; on this CPU the small size costs\s+"
                     r"([\d.]+)x-([\d.]+)x",
        lambda: (*h200_ratios()[:2], *peak_memory_range(), *cpu_ratio_range())),
    "readme default model size": (
        "README.md", r"`exda_restormer_tiny` with both ExDA primitives off \(([\d,]+) parameters,.*?"
                     r"a ([\d,]+)-parameter 1-channel medical model",
        lambda: (count(load("default_model.json")["photo"]["parameters"]),
                 count(load("default_model.json")["medical"]["parameters"]))),
    "readme tiling agreement": (
        "README.md", r"tiles of 256 px stay (\d+)-(\d+) dB from the whole-image result\s+"
                     r"\(tiles of 128: (\d+)-(\d+) dB\)",
        lambda: (*tiling_range(256), *tiling_range(128))),
    "readme large image memory": (
        "README.md", r"a 4096x4096 photo restores in (\d+) s at ([\d.]+) GiB\s+peak RSS and a 4000x3000 one in (\d+) s "
                     r"at ([\d.]+) GiB, each auto-tiled in (\d+) px tiles",
        lambda: large_image_claims()),
    "design restormer": (
        "docs/design.md", r"`restormer` has exactly Restormer's ([\d,]+) parameters.*?and ([\d.]+) GFLOPs at 256x256",
        lambda: design_table_row("restormer")),
    "design promptir": (
        "docs/design.md", r"exactly PromptIR's published ([\d,]+) parameters and ([\d.]+) GFLOPs.*?"
                          r"against the live PromptIR network \(([\d,]+) parameters\)",
        lambda: (*design_table_row("promptir"), count(model("exda_promptir")["backbone_parameters"]))),
    "design value transform cost": (
        "docs/design.md", r"\| `dwconv_gelu` \(\*\*default\*\*\) \| [^|]+\| 9 per channel per block: "
                          r"\+([\d,]+) \(\+([\d.]+)%\)",
        lambda: (count(model("exda_restormer")["parameters"] - model("restormer")["parameters"]),
                 pct(model("exda_restormer")["params_overhead_pct"]))),
    "design default choice": (
        "docs/design.md", r"choice \(\+([\d.]+)% parameters; \+([\d.]+)% FLOPs for ExDA as a whole",
        lambda: (pct(model("exda_restormer")["params_overhead_pct"]),
                 pct(model("exda_restormer")["flops_overhead_pct"], 1))),
    "design cost table": (
        "docs/design.md", r"\| restormer \| ([\d,]+) \| ([\d.]+) \| \|\n"
                          r"\| exda_restormer \| ([\d,]+) \| ([\d.]+) \| \+([\d.]+)% params, \+([\d.]+)% FLOPs \|\n"
                          r"\| promptir \| ([\d,]+) \| ([\d.]+) \| \|\n"
                          r"\| exda_promptir \| ([\d,]+) \| ([\d.]+) \| \+([\d.]+)% params, \+([\d.]+)% FLOPs",
        lambda: (*design_table_row("restormer"),
                 *design_table_row("exda_restormer"), pct(model("exda_restormer")["params_overhead_pct"]),
                 pct(model("exda_restormer")["flops_overhead_pct"]),
                 *design_table_row("promptir"),
                 *design_table_row("exda_promptir"), pct(model("exda_promptir")["params_overhead_pct"]),
                 pct(model("exda_promptir")["flops_overhead_pct"]))),
    "experiments twin cost": (
        "docs/experiments.md", r"Cost, measured so far: \+([\d.]+)% parameters and \+([\d.]+)% FLOPs at 256x256",
        lambda: (pct(model("exda_restormer_tiny")["params_overhead_pct"]),
                 pct(model("exda_restormer_tiny")["flops_overhead_pct"], 1))),
    "design wall-clock": (
        "docs/design.md", r"exda_restormer / restormer = ([\d.]+) \(fp32\) and ([\d.]+) \(bf16\);\s+"
                          r"exda_promptir / promptir = ([\d.]+) and ([\d.]+); peak memory \+(\d+)% \(fp32\) to "
                          r"\+(\d+)% \(bf16\)\. On the 2-core CPU\s+\(small size, batch 2, 96 px\) the ratio is "
                          r"([\d.]+)-([\d.]+)\.",
        lambda: (*h200_ratios(), *peak_memory_range(), *cpu_ratio_range())),
    "design split path": (
        "docs/design.md", r"bf16 ([\d.]+)-([\d.]+) before, ([\d.]+)-([\d.]+) after",
        lambda: (*bf16_range("model_speed_h200_concat_path.json"), *bf16_range("model_speed_h200.json"))),
    "model card today's haze and underwater": (
        "docs/model_card.md", r"haze goes from\s+([\d.]+) dB \(input\) to ([\d.]+) dB \(restored\) and underwater from "
                              r"([\d.]+) dB to ([\d.]+) dB",
        lambda: eval_scores("haze") + eval_scores("underwater")),
    "readme reliability": (
        "README.md", r"\*\*Bad input\.\*\* (\d+) kinds.*?: (\d+) of (\d+) handled as\s+expected.*?, "
                     r"(\d+) tracebacks.*?The (\d+) that fit in a folder, as one folder: (\d+) restored, "
                     r"(\d+) failed.*?exit status (\d+), (\d+) good outputs lost, (\d+) inputs overwritten.*?"
                     r"killed (\d+) times \((\d+) during a checkpoint\s+write\).*?: (\d+) of (\d+) resumes "
                     r"succeeded, (\d+) complete checkpoints lost.*?(\d+) checkpoints? damaged on purpose.*?: "
                     r"(\d+) of \d+ detected",
        lambda: reliability_claims()),
    "readme bad checkpoints": (
        "README.md", r"\*\*Bad checkpoints\.\*\* (\d+) kinds.*?: (\d+) of (\d+) pairs answered.*?, (\d+) tracebacks",
        lambda: bad_checkpoint_claims()),
    "design token options": (
        "docs/design.md", r"gives them back for only (\d+)% of sizes 4-1024.*?\((\d+)% of the map's variation.*?"
                          r"\(entropy ([\d.]+) of ln 16, largest weight ([\d.]+) vs 0.0625 at initialisation; "
                          r"([\d.]+) in the trained shipped model\).*?changes the network ([\d.]+)% of its residual at "
                          r"initialisation, against (\d+)-(\d+)% for removing the slot\. `standardized`:.*?"
                          r"entropy ([\d.]+)-([\d.]+), largest weight ([\d.]+)-([\d.]+), content share (\d+)-(\d+)%.*?"
                          r"the token changes the network by ([\d.]+)% of its residual at 64 px and ([\d.]+)% at 512 "
                          r"px\. `area`:.*?: ([\d.]+)%, ([\d.]+)%, ([\d.]+)% at 64/128/512 px",
        lambda: token_option_claims()),
    "experiments token table": (
        "docs/experiments.md", r"\| row, first reading \| " + SHARES + r"([\d.]+) \|\n"
                               r"\| row, standardized softmax \| " + SHARES + r"([\d.]+) / ([\d.]+) \|\n"
                               r"\| row, normalized X_in \| " + SHARES + r"([\d.]+) / ([\d.]+) \|\n"
                               r"\| columns, first reading \| " + SHARES + r"([\d.]+) \|\n"
                               r"\| columns, area-scaled \| " + SHARES + r"([\d.]+) \|",
        lambda: experiments_token_rows()),
    "readme ablation": (
        "README.md", r"both primitives together beat the plain backbone on (\d+) of (\d+) tasks",
        lambda: (str(sum(load("ablation.json")["results"][st]["both"]["tasks_won"] for st in ("deg3", "mixed"))),
                 str(sum(len(tasks) for tasks in load("ablation.json")["settings"].values())))),
    "experiments pair separability": (
        "docs/experiments.md", r"token's cell weights ([\d.]+)-([\d.]+) \(rising with depth, from encoders.0.0 to "
                               r"latent.1\), against ([\d.]+)-([\d.]+)\s+for ExDA's own pooled features and "
                               r"([\d.]+)-([\d.]+) for the twin's pooled features \(the twin is higher in (\d) of\s+"
                               r"(\d) blocks",
        lambda: pair_separability_claims("long_pair_step6000")),
    "readme pair at the last step": (
        "README.md", r"at ([\d,]+) ExDA - plain is ([+-][\d.]+) dB \((\d+) of (\d+) tasks",
        lambda: paired_gain_claims(10000)),
    "experiments pair at the last step": (
        "docs/experiments.md", r"and ([+-][\d.]+) at ([\d,]+) \(([\d.]+) against ([\d.]+) dB, (\d+) of (\d+)\)",
        lambda: experiments_pair_claims(10000)),
    "training tint at step 6000": (
        "docs/training.md", r"`R x 0.5` photos fell to ([\d.+-]+) levels\s+\(ExDA\) and ([\d.+-]+) \(twin\).*?"
                            r"\(`R x 0.5, B x 0.7`\),\s+([\d.+-]+) and ([\d.+-]+),.*?Underwater inputs still get "
                            r"([\d.+-]+) and ([\d.+-]+) levels.*?R, G, B ([\d.+-]+), ([\d.+-]+), ([\d.+-]+) levels\s+"
                            r"\(ExDA\) and ([\d.+-]+), ([\d.+-]+), ([\d.+-]+) \(twin\)",
        lambda: tint_claims("tint_probe_step6000.json")),
    "experiments whole photos": (
        "docs/experiments.md", r"ExDA - plain PSNR ([\d.+-]+) dB \((\d+) of (\d+) tasks won\), SSIM ([\d.+-]+), "
                               r"LPIPS ([\d.+-]+) \(worse.*?\(([\d,]+) against ([\d,]+)\), FLOPs at 256x256 "
                               r"([\d.]+) against ([\d.]+) G",
        lambda: whole_photo_claims(3000)),
    "experiments second seed": (
        "docs/experiments.md", r"ExDA - plain at seed 1 is \*\*([\d.+-]+) dB\*\* \((\d+) of 12 tasks won\), SSIM "
                               r"([\d.+-]+), LPIPS ([\d.+-]+) \(worse\).*?low light, ([\d.+-]+) dB \(([\d.]+) "
                               r"against ([\d.]+) dB.*?\*\*([\d.]+) dB\*\*",
        lambda: seed_claims(3000)),
    "readme second seed": (
        "README.md", r"gives ExDA - plain ([\d.+-]+) dB there \(([\d.+-]+) dB at seed 0\), against a seed spread of "
                     r"([\d.]+) dB",
        lambda: (*seed_claims(3000)[:1], whole_photo_claims(3000)[0], seed_claims(3000)[-1])),
    "training goals at step 7000": (
        "docs/training.md", r"at step\s+7,000 .*?meet (\d+) of (\d+) goals\. Clean photos come back at ([\d.]+) dB.*?"
                            r"haze gains only \+([\d.]+) dB on its input \(([\d.]+) dB, where the dark channel prior "
                            r"reaches\s+([\d.]+)\), motion blur \(([\d.+-]+) dB\) and JPEG \(([\d.+-]+) dB\).*?"
                            r"the model is ([\d.]+) dB short",
        lambda: goal_claims("default_model_step7000.json")),
    "model card photo network": (
        "docs/model_card.md", r"dim 16, blocks 1/2/2/2, refinement 1\), the same network as `restormer_tiny`: "
                              r"([\d,]+) parameters, ([\d.]+) GFLOPs",
        lambda: design_table_row("restormer_tiny")),
}


def paired_gain_claims(step: int) -> tuple[str, ...]:
    """The step, ExDA - plain mean PSNR gain and tasks won at ``step``, from benchmarks/results/long_run_curves.json."""
    (row,) = [row for row in load("long_run_curves.json")["paired"] if row["step"] == step]
    return f"{step:,}", f"{row['mean_gain']:+.2f}", str(row["tasks_won"]), str(row["tasks"])


def experiments_pair_claims(step: int) -> tuple[str, ...]:
    """The gain at ``step``, the step, the mean validation PSNR of ExDA and of its twin there (the runs'
    committed validation.jsonl) and the tasks won."""
    means = []
    for run in ("default_photo", "default_photo_plain"):
        lines = (ROOT / "training" / run / "validation.jsonl").read_text().splitlines()
        (mean,) = [row["mean_psnr"] for row in map(json.loads, lines) if row["step"] == step]
        means.append(f"{mean:.3f}")
    step_text, gain, won, tasks = paired_gain_claims(step)
    return gain, step_text, *means, won, tasks


def goal_claims(name: str) -> tuple[str, ...]:
    """From a benchmarks/default_model.py record: goals met and measured, the clean PSNR, haze's gain on its input,
    its PSNR and the best classical one, the gains of motion blur and JPEG, and how far noise 25 is from BM3D - 1 dB."""
    photo = load(name)["photo"]
    rows = {row["degradation"]: row for row in photo["rows"]}
    measured = [goal for goal in photo["goals"] if goal["met"] is not None]
    (bm3d,) = [goal["margin_db"] for goal in photo["goals"] if goal["goal"].startswith(">= bm3d")]

    def gain(task: str) -> str:
        return f"{rows[task]['restored_psnr'] - rows[task]['input_psnr']:.2f}"

    return (str(sum(goal["met"] for goal in measured)), str(len(measured)), f"{rows['clean']['restored_psnr']:.2f}",
            gain("haze"), f"{rows['haze']['restored_psnr']:.2f}", f"{rows['haze']['baseline_psnr']:.2f}",
            gain("motion_blur"), gain("jpeg"), f"{-bm3d:.2f}")


def tint_claims(name: str) -> tuple[str, ...]:
    """The red shift of two checkpoints (ExDA, twin) on the R x 0.5, green and underwater rows of a tint probe,
    then their R, G, B shifts on untinted photos."""
    exda, twin = (run["shifts"] for run in load(name)["checkpoints"])
    rows = ("R x 0.5", "R x 0.5, B x 0.7 (green)", "underwater input (seed 0)")
    red = [f"{shifts[row][0]:+.2f}" for row in rows for shifts in (exda, twin)]
    return (*red, *(f"{v:.2f}" for v in exda["none"]), *(f"{v:.2f}" for v in twin["none"]))


def whole_photo_claims(step: int) -> tuple[str, ...]:
    """ExDA - plain at ``step`` on the whole held-out photos, and both networks' cost, from scale_ablation.json."""
    result = load("scale_ablation.json")
    (pair,) = [p for p in result["steps"][str(step)]["pairs"] if p["b"] == "default_photo_plain"]
    mean, cost = pair["mean"], result["cost"]
    return (f"{mean['psnr']:+.3f}", str(pair["psnr_wins"]), str(pair["tasks"]), f"{mean['ssim']:+.4f}",
            f"{mean['lpips']:+.4f}", count(cost["exda"]["parameters"]), count(cost["plain"]["parameters"]),
            f"{cost['exda']['flops'] / 1e9:.2f}", f"{cost['plain']['flops'] / 1e9:.2f}")


def seed_claims(step: int) -> tuple[str, ...]:
    """Seed 1's ExDA - plain at ``step`` (mean, tasks won, SSIM, LPIPS; its low-light gain and both PSNRs) and the
    seed spread, from scale_ablation.json."""
    block = load("scale_ablation.json")["steps"][str(step)]
    (pair,) = [p for p in block["pairs"] if p["b"] == "default_photo_plain_seed1"]
    low = {run: block["runs"][run]["per_task"]["low_light"]["psnr"]
           for run in ("default_photo_seed1", "default_photo_plain_seed1")}
    mean = pair["mean"]
    return (f"{mean['psnr']:+.3f}", str(pair["psnr_wins"]), f"{mean['ssim']:+.4f}", f"{mean['lpips']:+.4f}",
            f"{pair['per_task']['low_light']['psnr']:+.2f}", *(f"{v:.2f}" for v in low.values()),
            f"{block['seed_spread']:.3f}")


def pair_separability_claims(folder: str) -> tuple[str, ...]:
    """Probe-accuracy ranges of ExDA's token and pooled features and of the twin's pooled features, and in how
    many blocks the twin's pooled features beat ExDA's, from an analysis of the long pair."""
    exda, twin = load(f"analysis/{folder}/separability.json")["models"].values()

    def span(layers: dict, kind: str) -> tuple[str, str]:
        values = [scores[kind]["probe_accuracy"] for scores in layers.values()]
        return f"{min(values):.3f}", f"{max(values):.3f}"

    accuracy = {label: {block: round(scores["pooled"]["probe_accuracy"], 6) for block, scores in layers.items()}
                for label, layers in (("exda", exda), ("twin", twin))}  # equal counts of hits are a tie
    higher = sum(accuracy["twin"][block] > accuracy["exda"][block] for block in twin)
    return (*span(exda, "token"), *span(exda, "pooled"), *span(twin, "pooled"), str(higher), str(len(twin)))


def document(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("claim", list(CLAIMS))
def test_quoted_figures_match_the_results_files(claim: str) -> None:
    doc, pattern, expected = CLAIMS[claim]
    match = re.search(pattern, document(doc), flags=re.DOTALL)
    assert match is not None, f"{doc}: the sentence of claim '{claim}' is gone or reworded; update CLAIMS"
    assert match.groups() == expected(), f"{doc}: '{claim}' quotes {match.groups()}, results say {expected()}"


def test_readme_default_model_table_matches_its_results_file() -> None:
    rows = re.findall(r"^\| (\w+) \| ([^|]+?) \| ([^|]+?) \| \((\w+)\) ([^|]+?) \| ([^|]*?) *\|$",
                      document("README.md"), flags=re.MULTILINE)
    assert [tuple(r) for r in rows] == default_model_rows()


def test_every_overhead_percentage_is_a_checked_claim() -> None:
    for doc in ("README.md", "docs/design.md"):
        text = document(doc)
        covered = [m.span() for _, (d, pattern, _) in CLAIMS.items() if d == doc
                   for m in re.finditer(pattern, text, flags=re.DOTALL)]
        for m in re.finditer(r"\+\d+\.\d+%", text):
            assert any(a <= m.start() < b for a, b in covered), f"{doc}: unchecked figure {m.group()} at {m.start()}"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"exda {__version__}"


def test_models_json_is_what_exda_models_prints_today(tmp_path: Path) -> None:
    """The committed file equals a fresh run of the same code on the small variants (the large ones
    take a minute; they come from the same function)."""
    assert main(["models", "--filter", "restormer_test", "--json", str(tmp_path / "m.json")]) == 0
    fresh = {row["model"]: row for row in json.loads((tmp_path / "m.json").read_text())["rows"]}
    committed = {row["model"]: row for row in load("models.json")["rows"]}
    for name, row in fresh.items():
        assert committed[name] == pytest.approx(row), f"benchmarks/results/models.json is stale for {name}"


def test_readme_counts_every_registered_degradation() -> None:
    from exda.degradations import list_degradations

    match = re.search(r"`exda degrade --list` names (\d+) degradations", document("README.md"))
    assert match is not None and int(match.group(1)) == len(list_degradations())


def ablation_rows() -> list[str]:
    """docs/experiments.md's ablation summary rows, rebuilt from benchmarks/results/ablation.json."""
    from statistics import mean

    record = load("ablation.json")
    base = record["profile"]["backbone"]["params"]
    rows = []
    for variant in record["variants"]:
        cells = []
        for setting, tasks in record["settings"].items():
            r = record["results"][setting][variant]
            m, g = r["mean_psnr"], r["paired_gain"]
            cells.append(f"{mean(m):.2f} [{min(m):.2f}, {max(m):.2f}] | "
                         f"{mean(g):+.2f} [{min(g):+.2f}, {max(g):+.2f}] | {r['tasks_won']}/{len(tasks)}")
        rows.append(f"| {variant} | {100 * (record['profile'][variant]['params'] / base - 1):+.2f}% | "
                    + " | ".join(cells) + " |")
    return rows


def analysis_rows() -> list[str]:
    """The separability and embedding tables of the ablation checkpoints, rebuilt from their JSON."""
    folder = "analysis/ablation_mixed_seed0/"
    sep = load(folder + "separability.json")["models"]
    models = list(sep)
    rows = []
    for block in sep[models[0]]:
        cells = [f"{sep[models[0]][block]['pooled']['probe_accuracy']:.3f}"]
        cells += [f"{sep[m][block]['token']['probe_accuracy']:.3f} / {sep[m][block]['pooled']['probe_accuracy']:.3f}"
                  for m in models[1:]]
        rows.append(f"| {block} | " + " | ".join(cells) + " |")
    per_task = load(folder + "embeddings.json")["per_task"]
    for task, r in per_task.items():
        labels = [k for k in r if k not in ("degraded", "n") and "fraction" not in k]
        rows.append(f"| {task} | {r['degraded']:.3f} | " + " | ".join(
            f"{r[k]:.3f} ({r[k + ': fraction closer than input']:.2f})" for k in labels) + " |")
    return rows


@pytest.mark.parametrize("rows", [ablation_rows, analysis_rows], ids=["ablation", "analyses"])
def test_experiments_tables_are_the_results_files(rows: Callable[[], list[str]]) -> None:
    text = document("docs/experiments.md")
    for row in rows():
        assert row in text, f"docs/experiments.md lacks (or quotes differently) the results row: {row}"


def test_training_doc_size_table_matches_its_results_file() -> None:
    """docs/training.md's model-size rows: params, patch x batch, steps, the mid-run and final mean PSNR."""
    text = document("docs/training.md")
    for row in load("model_size.json")["rows"]:
        mid = row["curve"][1]
        cells = (f"| {row['params']:,} | {row['patch']} x {row['batch']} | {row['steps']} | "
                 f"{mid['mean_psnr']:.2f} ({mid['hours']:.2f} h) / {row['final_mean_psnr']:.2f} |")
        assert cells in text, f"docs/training.md lacks (or quotes differently) {row['name']}: {cells}"


def test_training_doc_haze_table_matches_its_results_file() -> None:
    """docs/training.md's haze arms: arm - control for haze, clean and the mean, as haze_trial.md computes them."""
    text = document("docs/training.md")
    record = load("haze_trial.json")
    assert len(record["arms"]) == 2
    for arm in record["arms"]:
        control, changed = arm["control"]["psnr"], arm["arm"]["psnr"]
        cells = " | ".join(f"{changed[t] - control[t]:+.2f} dB" for t in ("haze", "clean", "average"))
        assert f"-{arm['arm']['step']:,} | {cells} |" in text, f"docs/training.md lacks {arm['label']}: {cells}"
    dcp = record["dark_channel"]
    assert (f"from {dcp['haze']['input']['mean']:.1f} to {dcp['haze']['dark_channel']['mean']:.1f} dB but takes the "
            f"clean ones down to {dcp['clean']['dark_channel']['mean']:.1f} dB "
            f"({dcp['clean']['dark_channel']['min']:.1f} dB at worst)") in " ".join(text.split())
    auc = record["separability"]["auc"]
    assert f"AUC of {auc['stretched_proxy']:.3f} over the {record['separability']['crops']} training" in " ".join(
        text.split()) and f"only a little weaker: {auc['near_veiled']:.3f} if" in " ".join(text.split())
