"""MoCE-IR's stochastic routing against the official code: test-time routing noise and training mode.

benchmarks/official_equivalence.py checks the published-checkpoint path with the official routing noise
set to 0 (exda's inference is deterministic). This checks the rest of the official forward, seeded: in eval
mode with the official test-time noise (``inference_noise=True``, batch 1 as its test script runs), and in
training mode at batch 2 (noisy top-1 routing, sparse dispatch, the balance loss ``total_loss``), all in
float64 (the official float32 casts removed, as in official_equivalence.py). Needs the official checkout::

    git clone https://github.com/eduardzamfir/MoCE-IR /tmp/official/moce-ir
    python benchmarks/moce_ir_routing.py /tmp/official/moce-ir
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

import exda

sys.path.insert(0, str(Path(__file__).parent))
from official_equivalence import MOCE_IR_OPTIONS, load_official, randomise  # noqa: E402


def combine_in_input_dtype(self, expert_out, multiply_by_gates=True):
    """The official ``SparseDispatcher.combine`` without its float32 cast (``stitched.float()``)."""
    stitched = torch.cat(expert_out, 0)
    if multiply_by_gates:
        stitched = stitched.mul(self._nonzero_gates.unsqueeze(-1).unsqueeze(-1))
    zeros = stitched.new_zeros(self._gates.size(0), *expert_out[-1].shape[1:])
    return zeros.index_add(0, self._batch_index, stitched)


def check(name: str, root: Path, seed: int) -> float:
    official = load_official(name, root)  # noise set to 0 there; restored below
    names = type(official).__init__.__globals__  # the official module's namespace (not in sys.modules)
    names["SparseDispatcher"].combine = combine_in_input_dtype
    for router in official.modules():
        if isinstance(router, names["RoutingFunction"]):
            router.noise_std = 1.0 / router.num_experts
    randomise(official, torch.Generator().manual_seed(seed))
    official = official.double()
    ours = exda.create_model(name, inference_noise=True, auxiliary_loss_weight=1.0).double()  # the bare loss
    ours.load_state_dict(exda.models.official.OFFICIAL_MAPPINGS[name](official.state_dict()))
    h, w = 37, 29
    x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    padded = F.pad(x, (0, -w % 8, 0, -h % 8), mode="reflect")
    worst = 0.0
    official.eval(), ours.eval()
    with torch.no_grad():
        for b in range(2):
            torch.manual_seed(seed + 10 + b)
            a = official(padded[b:b + 1])[..., :h, :w]
            torch.manual_seed(seed + 10 + b)
            diff = (a - ours(x[b:b + 1])).abs().max().item()
            print(f"{name:10s} eval, test-time noise, image {b}: max|diff| {diff:.3e}")
            worst = max(worst, diff)
    official.train(), ours.train()
    torch.manual_seed(seed + 20)
    a = official(padded)[..., :h, :w]
    torch.manual_seed(seed + 20)
    out, balance = ours.restore_with_auxiliary_loss(x)
    diff, loss_diff = (a - out).abs().max().item(), abs(official.total_loss - balance).item()
    print(f"{name:10s} train, batch 2: max|diff| {diff:.3e}; balance loss {balance.item():.6f}, "
          f"|diff| {loss_diff:.3e}")
    return max(worst, diff, loss_diff)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path, help="the official MoCE-IR checkout")
    parser.add_argument("--tol", type=float, default=1e-10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    assert MOCE_IR_OPTIONS["topk"] == 1
    worst = max(check(name, args.checkout, args.seed) for name in ("moce_ir_s", "moce_ir"))
    print(f"worst {worst:.3e} (tol {args.tol:g}): {'ok' if worst <= args.tol else 'FAIL'}")
    return 0 if worst <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
