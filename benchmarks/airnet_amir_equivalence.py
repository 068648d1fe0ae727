"""AirNet and AMIR: the official networks vs ours, in float64, with random weights.

Needs the official code outside this repository (its model files only) and ``einops`` (AMIR imports it;
exda does not need it):

    mkdir -p /tmp/official/airnet /tmp/official/amir
    git clone https://github.com/XLearning-SCU/2022-CVPR-AirNet /tmp/src-airnet
    cp -r /tmp/src-airnet/net /tmp/official/airnet/
    git clone https://github.com/Yaziwel/All-In-One-Medical-Image-Restoration-via-Task-Adaptive-Routing /tmp/src-amir
    cp /tmp/src-amir/model/Model_AMIR.py /tmp/official/amir/
    pip install --target /tmp/official/pydeps einops
    python benchmarks/airnet_amir_equivalence.py --official /tmp/official --pythonpath /tmp/official/pydeps

Two edits to those copies, which the script makes itself in memory, never on disk:
- AirNet's ``net/deform_conv.py`` imports ``modulated_deform_conv2d`` from mmcv (a compiled CUDA/C++
  extension); the script hands it exda's pure-PyTorch one instead (``exda.layers.deform_conv``, checked
  against a direct loop computation in tests/test_peers_airnet_amir.py).
- AMIR's ``SparseDispatcher.combine`` casts the experts' outputs to float32 (``stitched.float()`` onto a
  float32 ``torch.zeros``); that cast is lifted (the same arithmetic in the input's dtype), because a
  float32 step caps any comparison near 1e-7. ``--keep-float32-cast`` runs the file as it is.

Every official parameter and buffer gets random values (offsets and the zero-initialised routing
gammas/betas included, so the deformable sampling and the routing do act); the state dict goes through
``exda.models.official``'s mapping into ``exda.create_model(...)`` (strict load), and both run in eval
mode on the same float64 input: AirNet at an odd size (it needs no padding), AMIR at a multiple of 8 as
its test script feeds it (ours pads other sizes). ``--write-keys DIR`` records the official key lists
with shapes (tests/data/official_keys). Exit status 1 when an output differs by more than ``--tol``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import types
from pathlib import Path

import torch

import exda
from exda.layers.deform_conv import modulated_deform_conv2d
from exda.models.official import OFFICIAL_MAPPINGS

SOURCES = {
    "airnet": ("XLearning-SCU/2022-CVPR-AirNet net/model.py, AirNet(opt with batch_size=5: the five-task "
               "all-in-one setting of option.py).state_dict()", "bedea82f7f7a71f135bcc026fd02ea9f2feaa710"),
    "amir": ("Yaziwel/All-In-One-Medical-Image-Restoration-via-Task-Adaptive-Routing model/Model_AMIR.py, "
             "AMIR() as main_train_AMIR.py builds it (1 channel).state_dict()",
             "80b1aa27503dbff63bdf01ea4592d94dce197ed7"),
}


def load_airnet(root: Path) -> torch.nn.Module:
    mmcv = types.ModuleType("mmcv")
    mmcv.ops = types.ModuleType("mmcv.ops")
    mmcv.ops.modulated_deform_conv2d = modulated_deform_conv2d
    sys.modules.setdefault("mmcv", mmcv)
    sys.modules.setdefault("mmcv.ops", mmcv.ops)
    sys.path.insert(0, str(root / "airnet"))
    model = importlib.import_module("net.model")
    return model.AirNet(types.SimpleNamespace(batch_size=5))


def load_amir(root: Path, keep_cast: bool) -> torch.nn.Module:
    sys.path.insert(0, str(root / "amir"))
    module = importlib.import_module("Model_AMIR")
    if not keep_cast:
        def combine(self, expert_out, multiply_by_gates=True):  # the official combine without the fp32 cast
            stitched = torch.cat(expert_out, 0).exp()
            if multiply_by_gates:
                stitched = stitched.mul(self._nonzero_gates)
            zeros = torch.zeros(self._gates.size(0), expert_out[-1].size(1), dtype=stitched.dtype,
                                device=stitched.device)
            combined = zeros.index_add(0, self._batch_index, stitched)
            combined[combined == 0] = torch.finfo(torch.float64).eps
            return combined.log()

        module.SparseDispatcher.combine = combine
    return module.AMIR()


def randomise(model: torch.nn.Module) -> None:
    """Random values everywhere: weights small, BN variances positive, temperatures around 1."""
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand_like(t))
            elif name.endswith("temperature"):
                t.copy_(1 + 0.3 * torch.randn_like(t))
            elif name.endswith(("moe.mean", "moe.std")):  # the standard normal's constants
                continue
            else:
                t.copy_(0.05 * torch.randn_like(t))


def official_keys(state: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    return {key: list(t.shape) for key, t in state.items()}


def compact_json(record: dict) -> str:
    """JSON with one key (and its shape) per line."""
    lines = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in record.items() if k != "keys"]
    keys = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in record["keys"].items())
    return "{\n" + ",\n".join(lines) + ',\n "keys": {\n' + keys + "\n }\n}\n"


def compare(name: str, official: torch.nn.Module, size: tuple[int, int], channels: int, tol: float) -> dict:
    torch.manual_seed(0)
    official = official.double()
    randomise(official)
    if name == "airnet":  # offsets of a few pixels, so taps land between pixels and outside the image
        with torch.no_grad():
            for module_name, p in official.named_parameters():
                if "conv_offset_mask" in module_name:
                    p.mul_(10)
    official.eval()
    ours = exda.create_model(name, in_channels=channels).double().eval()
    ours.load_state_dict(OFFICIAL_MAPPINGS[name](official.state_dict()), strict=True)
    x = torch.rand(2, channels, *size, dtype=torch.float64)
    with torch.no_grad():
        reference = official(x, x) if name == "airnet" else official(x)
        output = ours(x)
    diff = (reference - output).abs().max().item()
    return {"model": name, "input": list(x.shape), "max_abs_diff": diff,
            "output_max_abs": reference.abs().max().item(), "tol": tol, "ok": diff <= tol}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, required=True, help="folder with airnet/net and amir/Model_AMIR.py")
    parser.add_argument("--pythonpath", type=Path, help="extra folder with einops, if not installed")
    parser.add_argument("--models", nargs="+", default=["airnet", "amir"], choices=["airnet", "amir"])
    parser.add_argument("--keep-float32-cast", action="store_true", help="run AMIR's combine unmodified")
    parser.add_argument("--tol", type=float, default=1e-10)
    parser.add_argument("--write-keys", type=Path, help="write <model>.json official key lists here")
    args = parser.parse_args()
    if args.pythonpath:
        sys.path.insert(0, str(args.pythonpath))
    torch.set_num_threads(1)
    ok = True
    for name in args.models:
        if name == "airnet":
            official, size, channels = load_airnet(args.official), (37, 29), 3
        else:
            official, size, channels = load_amir(args.official, args.keep_float32_cast), (48, 40), 1
        if args.write_keys:
            source, commit = SOURCES[name]
            record = {"source": source, "commit": commit, "keys": official_keys(official.state_dict())}
            args.write_keys.mkdir(parents=True, exist_ok=True)
            (args.write_keys / f"{name}.json").write_text(compact_json(record))
        result = compare(name, official, size, channels, args.tol)
        print(json.dumps(result))
        ok &= result["ok"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
