"""Histoformer: the official network vs ours, in float64, on an odd-sized input.

Needs a checkout of sunshangquan/Histoformer outside this repository and ``einops`` (which the official
code imports; exda does not need it):

    git clone https://github.com/sunshangquan/Histoformer /tmp/official/histoformer
    pip install --target /tmp/official/pydeps einops
    python benchmarks/histoformer_equivalence.py --official /tmp/official/histoformer --pythonpath /tmp/official/pydeps

The official model is built from its own training options (``Allweather/Options/Allweather_Histoformer.yml``),
given random weights (temperatures too), and run as its test script runs it: reflect-padded to a
multiple of 8, then cropped. Its ``state_dict()`` goes through ``exda.models.official``'s mapping into
``exda.create_model("histoformer")`` (strict load). Exit status 1 when the outputs differ by more than
``--tol``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

import exda
from exda.models.official import OFFICIAL_MAPPINGS

ARCH_FILE = Path("basicsr/models/archs/histoformer_arch.py")
OPTIONS_FILE = Path("Allweather/Options/Allweather_Histoformer.yml")


def load_official(root: Path) -> torch.nn.Module:
    spec = importlib.util.spec_from_file_location("histoformer_arch", root / ARCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    options = yaml.safe_load((root / OPTIONS_FILE).read_text())["network_g"]
    options.pop("type")
    return module.Histoformer(**options)


def official_forward(model: torch.nn.Module, x: torch.Tensor, factor: int = 8) -> torch.Tensor:
    """As Allweather/test_histoformer.py: reflect-pad bottom/right to a multiple of 8, run, crop."""
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % factor, -w % factor
    return model(F.pad(x, (0, pad_w, 0, pad_h), mode="reflect"))[..., :h, :w]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, required=True, help="checkout of sunshangquan/Histoformer")
    parser.add_argument("--pythonpath", type=Path, help="extra folder with einops, if not installed")
    parser.add_argument("--size", type=int, nargs=2, default=(37, 29), metavar=("H", "W"))
    parser.add_argument("--tol", type=float, default=1e-10)
    args = parser.parse_args()
    if args.pythonpath:
        sys.path.insert(0, str(args.pythonpath))
    torch.set_num_threads(1)
    torch.manual_seed(0)
    official = load_official(args.official).double().eval()
    with torch.no_grad():
        for name, p in official.named_parameters():  # temperatures around 1, convolutions small
            p.copy_(1 + 0.5 * torch.randn_like(p) if name.endswith("temperature") else 0.05 * torch.randn_like(p))
    ours = exda.create_model("histoformer").double().eval()
    ours.load_state_dict(OFFICIAL_MAPPINGS["histoformer"](official.state_dict()), strict=True)
    x = torch.rand(2, 3, *args.size, dtype=torch.float64)
    with torch.no_grad():
        reference = official_forward(official, x)
        output = ours(x)
    result = {
        "model": "histoformer",
        "input": list(x.shape),
        "max_abs_diff": (reference - output).abs().max().item(),
        "network_part_max_abs": (reference - x).abs().max().item(),  # what the network adds to the input
        "tol": args.tol,
    }
    print(json.dumps(result))
    return 0 if result["max_abs_diff"] <= args.tol else 1


if __name__ == "__main__":
    raise SystemExit(main())
