"""Does each reading of the global spatial token act, at every image size? (issue 9, item 1)

For each token option (``exda.layers.TokenOptions``, one changed at a time from the first reading) and
each image size, on a sample photo, this measures:

- ``residual share``: how much turning the token on changes the network's output, relative to the
  residual the network adds without it, ||f(x) - f_off(x)|| / ||f_off(x) - x||; the token has no
  parameters, so f_off is the same weights with the token removed;
- ``content share``: the same with f_off replaced by the network whose token keeps its slot but loses
  its content (every cell weight 1/G*G): how much of the token's effect comes from what it says about
  the input rather than from the extra slot itself;
- ``entropy`` and ``max weight``: the cell softmax's entropy over ln(G*G) (1 = uniform) and its largest
  weight (uniform: 1/G*G), averaged over channels and blocks;
- ``border TV``: the share of the up-pooled token map's total variation that sits on cell borders
  (1.0 = a blocky map, all change at the edges);
- ``misaligned sizes``: the share of sizes n in [G, 1024] where pooling the up-pooled cells does not give
  the cells back (pooling and up-pooling disagree on which pixel belongs to which cell).

Two networks: ``exda_restormer_tiny`` at initialisation (seed 0, what training starts from) and the
shipped ``exda_photo`` weights (trained with the first reading; other readings are off-distribution
there, so its rows show reach, not quality). Writes ``benchmarks/results/token_options.{json,md}``.

    .venv/bin/python benchmarks/token_options.py
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from exda.atomic import atomic_write
from exda.data.samples import load_sample
from exda.inference.loader import load_network
from exda.layers import GlobalSpatialToken, TokenOptions, TransformerBlock, TransposedAttention
from exda.models import create_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SIZES = (64, 128, 512)
# the first reading, in which the shipped weights were trained (their checkpoints record it); each other
# reading changes one option
FIRST = TokenOptions(grid=4, upsample="nearest", softmax="raw", column_scale="none", input="raw")
READINGS: dict[str, tuple[str, TokenOptions]] = {
    "row (first reading)": ("row", FIRST),
    "row aligned": ("row", replace(FIRST, upsample="aligned")),
    "row bilinear": ("row", replace(FIRST, upsample="bilinear")),
    "row standardized": ("row", replace(FIRST, softmax="standardized")),
    "row normalized input": ("row", replace(FIRST, input="normalized")),
    "columns": ("columns", FIRST),
    "columns area": ("columns", replace(FIRST, column_scale="area")),
}


class ContentFreeToken(GlobalSpatialToken):
    """The measuring device for ``content share``: the token's slot with uniform cell weights."""

    def _softmax(self, pooled: torch.Tensor) -> torch.Tensor:
        return torch.full_like(pooled, 1.0 / pooled.shape[-1])


def set_token(model: torch.nn.Module, kind: str, options: TokenOptions, token_class: type = GlobalSpatialToken) -> None:
    """Give every attention of ``model`` this token (kind "off" removes it); tokens have no weights."""
    for module in model.modules():
        if isinstance(module, TransposedAttention):
            module.token = None if kind == "off" else token_class(module.heads, kind, options)


def photo(size: int) -> torch.Tensor:
    """A centre crop of the held-out 'coffee' photo, resized to size x size (1 x 3 x size x size)."""
    image = torch.from_numpy(np.ascontiguousarray(load_sample("coffee"))).permute(2, 0, 1)[None]
    side = min(image.shape[-2:])
    top, left = (image.shape[-2] - side) // 2, (image.shape[-1] - side) // 2
    crop = image[..., top:top + side, left:left + side]
    return torch.nn.functional.interpolate(crop, size=(size, size), mode="area")


def cell_statistics(model: torch.nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """Mean normalised entropy and mean largest weight of the cell softmax over all blocks."""
    inputs: list[tuple[TransformerBlock, torch.Tensor]] = []
    hooks = [block.register_forward_pre_hook(lambda module, args: inputs.append((module, args[0])))
             for block in model.modules() if isinstance(block, TransformerBlock)]
    model(x)
    for hook in hooks:
        hook.remove()
    entropies, peaks = [], []
    for block, block_input in inputs:
        weights = block.token_cell_weights(block_input).double()
        cells = weights.shape[-1]
        entropies.append((-(weights * weights.clamp_min(1e-300).log()).sum(-1) / math.log(cells)).mean().item())
        peaks.append(weights.max(dim=-1).values.mean().item())
    return float(np.mean(entropies)), float(np.mean(peaks))


def border_tv_share(token: GlobalSpatialToken, size: int) -> float:
    """Share of a random cell map's up-pooled total variation (along rows) on cell-border columns."""
    torch.manual_seed(0)
    cells = torch.rand(1, 1, token.grid, token.grid, dtype=torch.float64)
    up = token.upsample(cells, (size, size))
    jumps = (up[..., 1:] - up[..., :-1]).abs().sum(dim=(0, 1, 2))  # per column boundary
    cell = torch.arange(size) * token.grid // size
    border = cell[1:] != cell[:-1]
    return (jumps[border].sum() / jumps.sum()).item()


def misaligned_share(token: GlobalSpatialToken) -> float:
    torch.manual_seed(0)
    cells = torch.rand(1, 1, token.grid, token.grid, dtype=torch.float64)
    sizes = range(token.grid, 1025)
    bad = sum(not torch.allclose(token.pool(token.upsample(cells, (n, n))), cells) for n in sizes)
    return bad / len(sizes)


def measure(model: torch.nn.Module, x: torch.Tensor, kind: str, options: TokenOptions) -> dict[str, float]:
    with torch.inference_mode():
        set_token(model, "off", options)
        off = model(x)
        set_token(model, kind, options, ContentFreeToken)
        slot_only = model(x)
        set_token(model, kind, options)
        on = model(x)
        entropy, peak = cell_statistics(model, x)
    share = ((on - off).norm() / (off - x).norm()).item()
    content = ((on - slot_only).norm() / (off - x).norm()).item()
    return {"residual_share": share, "content_share": content, "entropy": entropy, "max_weight": peak}


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    networks = {"init": create_model("exda_restormer_tiny").eval(),
                "shipped": load_network(ROOT / "exda" / "weights" / "exda_photo.safetensors")[0]}
    record: dict = {"sizes": list(SIZES), "grid": FIRST.grid, "readings": {}}
    for name, (kind, options) in READINGS.items():
        token = GlobalSpatialToken(1, kind, options)
        row: dict = {"kind": kind, "options": asdict(options),
                     "border_tv_share": border_tv_share(token, 128) if kind == "row" else None,
                     "misaligned_sizes": None if options.upsample == "bilinear" else misaligned_share(token)}
        for net_name, model in networks.items():
            for size in SIZES:
                row[f"{net_name}_{size}"] = measure(model, photo(size), kind, options)
        record["readings"][name] = row
        print(name, json.dumps(row))
    uniform = 1 / FIRST.grid**2
    lines = ["# Token options (benchmarks/token_options.py)", "",
             "residual share: ||f(x) - f_off(x)|| / ||f_off(x) - x|| on the 'coffee' photo (f_off: same weights, "
             f"token removed); entropy: cell-softmax entropy / ln(G*G) (1 = uniform); max weight (uniform "
             f"{uniform:.4f}); border TV: share of the up-pooled map's variation on cell borders (row only, "
             "128 px); misaligned: share of sizes 4..1024 where pool(up(cells)) != cells (bilinear up-pooling "
             "is not a copy of the cells, so n/a).", ""]
    for net_name in networks:
        lines += [f"## {net_name} ({'exda_restormer_tiny, seed 0' if net_name == 'init' else 'exda_photo'})", "",
                  "| reading | " + " | ".join(f"residual / content share {s}px" for s in SIZES)
                  + " | entropy 64 / 512 | max weight 64 / 512 | border TV | misaligned |",
                  "|---|" + "---|" * len(SIZES) + "---|---|---|---|"]
        for name, row in record["readings"].items():
            shares = " | ".join(f"{100 * row[f'{net_name}_{s}']['residual_share']:.2f}% / "
                                f"{100 * row[f'{net_name}_{s}']['content_share']:.2f}%" for s in SIZES)
            ent = f"{row[f'{net_name}_64']['entropy']:.4f} / {row[f'{net_name}_512']['entropy']:.4f}"
            peak = f"{row[f'{net_name}_64']['max_weight']:.4f} / {row[f'{net_name}_512']['max_weight']:.4f}"
            tv = "-" if row["border_tv_share"] is None else f"{row['border_tv_share']:.2f}"
            off = "n/a" if row["misaligned_sizes"] is None else f"{100 * row['misaligned_sizes']:.0f}%"
            lines.append(f"| {name} | {shares} | {ent} | {peak} | {tv} | {off} |")
        lines.append("")
    text = "\n".join(lines)
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write(RESULTS / "token_options.json", lambda tmp: tmp.write_text(json.dumps(record, indent=1)))
    atomic_write(RESULTS / "token_options.md", lambda tmp: tmp.write_text(text))
    print(text)


if __name__ == "__main__":
    main()
