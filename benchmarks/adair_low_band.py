"""AdaIR's frequency block (AFLB) with a non-empty low-frequency band, against the official code.

The low band's half-size is (feature side // 128) * a predicted rate in (0, 1), truncated, so it is empty
unless a feature map is at least 256 px on a side: the whole-network check in official_equivalence.py
(37 x 29) never reaches it. This runs one official ``FreModule`` and exda's ``FrequencyModulation`` with the
same random weights (the rate predictor pushed up so both boxes are non-empty) on a 300 x 530 feature
map, in float64. Needs the official checkout::

    git clone https://github.com/c-yn/AdaIR /tmp/official/adair
    python benchmarks/adair_low_band.py /tmp/official/adair
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from exda.models.adair import FrequencyModulation, adair_from_official


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path, help="the official AdaIR checkout")
    parser.add_argument("--tol", type=float, default=1e-10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location("official_adair", args.checkout / "net" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    torch.manual_seed(0)
    dim, heads, size = 16, 2, (300, 530)
    official = module.FreModule(dim, num_heads=heads, bias=False).double()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in official.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
        official.rate_conv[-1].weight.add_(torch.tensor([0.5, 1.0], dtype=torch.float64)[:, None, None, None])
    ours = FrequencyModulation(dim, heads).double()
    prefix = "frequency.2."  # the official fre1 -> ours
    mapped = adair_from_official({f"fre1.{k}": v for k, v in official.state_dict().items()})
    ours.load_state_dict({k.removeprefix(prefix): v for k, v in mapped.items()})

    image = torch.rand(2, 3, 301, 527, generator=generator, dtype=torch.float64)
    feats = torch.randn(2, dim, *size, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        embedded = ours.embed(F.interpolate(image, size, mode="bilinear", align_corners=False))
        rate = ours.rate_conv(embedded.mean(dim=(-2, -1), keepdim=True)).sigmoid()[:, :, 0, 0]
        halves = [((size[0] // 128) * r[0]).int().item() for r in rate], [((size[1] // 128) * r[1]).int().item()
                                                                          for r in rate]
        diff = (official(image, feats) - ours(image, feats)).abs().max().item()
    print(f"low-band half-sizes (rows, cols per image): {halves}; max|diff| {diff:.3e}")
    ok = diff <= args.tol and min(min(h) for h in halves) > 0
    print("ok" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
