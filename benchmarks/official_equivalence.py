"""Published-checkpoint loading, end to end: official code -> its own file format -> exda.load_pretrained.

For each model whose official code is on disk, this builds the official network as its training code
does, gives it random weights (every parameter perturbed, so norms, biases and temperatures are not at
their initial values), saves them the way that code's training saves them - a BasicSR ``.pth``
(``{"params": ..., "params_ema": ...}``) and a Lightning ``.ckpt`` (``{"state_dict": {"net." + key: ...}}``)
- and loads each file with :func:`exda.load_pretrained`, once with ``arch`` named and once inferred.
The official and the loaded networks then run the same input in float64; the largest absolute output
difference must be <= ``--tol`` (1e-10). Weights are stored in float32, as published checkpoints are,
and both networks are converted to float64 after loading.

Needs the official code outside this repository and ``einops`` (the official code imports it; exda
does not), e.g.::

    git clone https://github.com/swz30/Restormer /tmp/official/restormer
    git clone https://github.com/va1shn9v/PromptIR /tmp/official/promptir
    git clone https://github.com/XLearning-SCU/2022-CVPR-AirNet /tmp/official/airnet
    git clone https://github.com/Yaziwel/All-In-One-Medical-Image-Restoration-via-Task-Adaptive-Routing \\
        /tmp/official/amir
    git clone https://github.com/sunshangquan/Histoformer /tmp/official/histoformer
    git clone https://github.com/c-yn/AdaIR /tmp/official/adair
    git clone https://github.com/eduardzamfir/MoCE-IR /tmp/official/moce-ir
    pip install --target /tmp/official/pydeps einops
    python benchmarks/official_equivalence.py --pythonpath /tmp/official/pydeps \\
        --official restormer=/tmp/official/restormer promptir=/tmp/official/promptir \\
        --json benchmarks/results/official_equivalence.json

``--keys-out tests/assets/official_keys`` also writes each official ``state_dict()``'s key list and shapes
(``{source, commit, keys: {key: shape}}``), the data tests/models/test_official.py checks the mappings against.

Adding a model: append an :class:`Official` row to ``OFFICIAL`` - the file in the official repository
that defines the network, the class name, the constructor arguments its training script uses, our
registered ``arch`` (which must have an ``@official_mapping``), and an input size the official forward
accepts - then run this with ``--official <name>=<checkout>``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import exda


@dataclass(frozen=True)
class Official:
    """One official network: where it is defined, how its training script builds it, and our name."""

    repo: str  # GitHub owner/name
    arch_file: str  # defining file, relative to the checkout
    class_name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    arch: str = ""  # our registered model
    input_hw: tuple[int, int] = (48, 40)  # the official forward needs a multiple of 8 (no padding)
    in_channels: int = 3
    # Optional hooks for code that does not import or run as is: prepare(checkout) before the import,
    # patch(module) after it, build(module) instead of class_name(**kwargs), forward(model, x) instead of model(x).
    prepare: Callable[[Path], None] | None = None
    patch: Callable[[types.ModuleType], None] | None = None
    build: Callable[[types.ModuleType], nn.Module] | None = None
    forward: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None


def _airnet_imports(root: Path) -> None:
    """AirNet's net/model.py imports its package ``net`` and mmcv's compiled ``modulated_deform_conv2d``;
    the latter is replaced by exda's pure-PyTorch one (checked against a direct computation in
    tests/models/test_peers_airnet_amir.py), so both networks run the same deformable convolution."""
    from exda.layers.deform_conv import modulated_deform_conv2d

    mmcv, ops = types.ModuleType("mmcv"), types.ModuleType("mmcv.ops")
    ops.modulated_deform_conv2d, mmcv.ops = modulated_deform_conv2d, ops
    sys.modules.setdefault("mmcv", mmcv)
    sys.modules.setdefault("mmcv.ops", ops)
    sys.path.insert(0, str(root))


def _amir_combine_in_input_dtype(module: types.ModuleType) -> None:
    """AMIR's ``SparseDispatcher.combine`` casts the experts' outputs to float32 (``stitched.float()`` onto
    a float32 ``torch.zeros``), which caps a float64 comparison near 1e-7; the same arithmetic in the
    input's dtype instead (a float32 run is unchanged)."""

    def combine(self, expert_out, multiply_by_gates=True):
        stitched = torch.cat(expert_out, 0).exp()
        if multiply_by_gates:
            stitched = stitched.mul(self._nonzero_gates)
        zeros = torch.zeros(self._gates.size(0), expert_out[-1].size(1), dtype=stitched.dtype,
                            device=stitched.device)
        combined = zeros.index_add(0, self._batch_index, stitched)
        combined[combined == 0] = torch.finfo(torch.float64).eps
        return combined.log()

    module.SparseDispatcher.combine = combine


def _stub_fvcore(root: Path) -> None:
    """MoCE-IR's net/moce_ir.py imports fvcore's FLOP counter, which only its ``__main__`` uses."""
    fvcore, fv_nn = types.ModuleType("fvcore"), types.ModuleType("fvcore.nn")
    fv_nn.FlopCountAnalysis = fv_nn.flop_count_table = None
    fvcore.nn = fv_nn
    sys.modules.setdefault("fvcore", fvcore)
    sys.modules.setdefault("fvcore.nn", fv_nn)


def _moce_ir_in_input_dtype(module: types.ModuleType) -> None:
    """MoCE-IR's ``FFTAttention`` casts q and k to float32 before its FFTs (``q.float()``), which caps a
    float64 comparison near 1e-7; the same arithmetic in the input's dtype (a float32 run is unchanged)."""
    rearrange = module.rearrange

    def forward(self, x):
        b, c, h, w = x.shape
        q = self.q_dwconv(self.q(x))
        k, v = self.kv_dwconv(self.kv(x)).chunk(2, dim=1)
        q, k = self.pad_and_rearrange(q), self.pad_and_rearrange(k)
        out = torch.fft.irfft2(torch.fft.rfft2(q) * torch.fft.rfft2(k), s=(self.patch_size, self.patch_size))
        out = rearrange(out, "b c h w p1 p2 -> b c (h p1) (w p2)")[:, :, :h, :w]
        return self.proj_out(self.norm(out) * v)

    module.FFTAttention.forward = forward


def _moce_ir(dim: int) -> Callable[[types.ModuleType], nn.Module]:
    """src/options.py's MoCE_IR_S / MoCE_IR defaults as src/train.py passes them. The official router also
    draws Gaussian noise at test time (random outputs); exda's inference is deterministic, so the noise is
    set to 0 here (the seeded comparison with noise, and of training mode and the balance loss, is
    benchmarks/moce_ir_routing.py)."""

    def build(module: types.ModuleType) -> nn.Module:
        model = module.MoCEIR(dim=dim, **MOCE_IR_OPTIONS)
        for router in model.modules():
            if isinstance(router, module.RoutingFunction):
                router.noise_std = 0.0
        return model

    return build


MOCE_IR_OPTIONS = dict(num_blocks=[4, 6, 6, 8], num_dec_blocks=[2, 4, 4], levels=4, heads=[1, 2, 4, 8],
                       num_refinement_blocks=4, topk=1, num_experts=4, rank=2, with_complexity=False,
                       depth_type="constant", stage_depth=[1, 1, 1], rank_type="spread", complexity_scale="max")


def _histoformer_test_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """As Allweather/test_histoformer.py runs it: reflect-pad bottom/right to a multiple of 8, crop back."""
    h, w = x.shape[-2:]
    return model(nn.functional.pad(x, (0, -w % 8, 0, -h % 8), mode="reflect"))[..., :h, :w]


OFFICIAL: dict[str, Official] = {
    # basicsr/models/archs/restormer_arch.py, as Options/*Restormer.yml builds it (the defaults).
    "restormer": Official("swz30/Restormer", "basicsr/models/archs/restormer_arch.py", "Restormer", {},
                          arch="restormer"),
    # train.py: PromptIRModel.net = PromptIR(decoder=True), a LightningModule attribute named net.
    "promptir": Official("va1shn9v/PromptIR", "net/model.py", "PromptIR", {"decoder": True}, arch="promptir"),
    # train.py: AirNet(opt) with opt.batch_size = len(de_type) = 5 (the all-in-one setting: a queue of 5 * 256
    # keys); test.py runs net(x_query=x, x_key=x) in eval mode, at any size.
    "airnet": Official("XLearning-SCU/2022-CVPR-AirNet", "net/model.py", "AirNet", {"opt.batch_size": 5},
                       arch="airnet", input_hw=(37, 29), prepare=_airnet_imports,
                       build=lambda module: module.AirNet(types.SimpleNamespace(batch_size=5)),
                       forward=lambda model, x: model(x, x)),
    # Allweather/Options/Allweather_Histoformer.yml's network_g (the only published configuration).
    "histoformer": Official("sunshangquan/Histoformer", "basicsr/models/archs/histoformer_arch.py", "Histoformer",
                            {"dim": 36, "num_blocks": [4, 4, 6, 8], "num_refinement_blocks": 4, "heads": [1, 2, 4, 8],
                             "ffn_expansion_factor": 2.667, "bias": False, "LayerNorm_type": "WithBias"},
                            arch="histoformer", input_hw=(37, 29), forward=_histoformer_test_forward),
    # main_train_AMIR.py: AMIR() with its defaults (1 channel).
    "amir": Official("Yaziwel/All-In-One-Medical-Image-Restoration-via-Task-Adaptive-Routing", "model/Model_AMIR.py",
                     "AMIR", {}, arch="amir", in_channels=1, patch=_amir_combine_in_input_dtype),
    # train.py: AdaIRModel.net = AdaIR(decoder=True); odd input reflect-padded to a multiple of 8 as exda does.
    "adair": Official("c-yn/AdaIR", "net/model.py", "AdaIR", {"decoder": True}, arch="adair", input_hw=(37, 29),
                      forward=_histoformer_test_forward),
    "moce_ir_s": Official("eduardzamfir/MoCE-IR", "src/net/moce_ir.py", "MoCEIR", {"dim": 32, **MOCE_IR_OPTIONS},
                          arch="moce_ir_s", input_hw=(37, 29), prepare=_stub_fvcore, patch=_moce_ir_in_input_dtype,
                          build=_moce_ir(32), forward=_histoformer_test_forward),
    "moce_ir": Official("eduardzamfir/MoCE-IR", "src/net/moce_ir.py", "MoCEIR", {"dim": 48, **MOCE_IR_OPTIONS},
                        arch="moce_ir", input_hw=(37, 29), prepare=_stub_fvcore, patch=_moce_ir_in_input_dtype,
                        build=_moce_ir(48), forward=_histoformer_test_forward),
}


def load_official(name: str, root: Path) -> nn.Module:
    spec = OFFICIAL[name]
    if spec.prepare is not None:
        spec.prepare(root)
    module_spec = importlib.util.spec_from_file_location(f"official_{name}", root / spec.arch_file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if spec.patch is not None:
        spec.patch(module)
    return spec.build(module) if spec.build is not None else getattr(module, spec.class_name)(**spec.kwargs)


@torch.no_grad()
def randomise(model: nn.Module, generator: torch.Generator) -> None:
    """Perturb every parameter (scale 0.02; norm scales and temperatures stay positive around 1)."""
    for p in model.parameters():
        p.add_(0.02 * torch.randn(p.shape, generator=generator, dtype=p.dtype))


def commit_of(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def write_keys(name: str, root: Path, model: nn.Module, out_dir: Path) -> Path:
    spec = OFFICIAL[name]
    record = {
        "source": f"{spec.repo} {spec.arch_file}, {spec.class_name}(**{spec.kwargs}).state_dict()",
        "commit": commit_of(root),
        "keys": {k: list(v.shape) for k, v in model.state_dict().items()},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    keys = ",\n".join(f"  {json.dumps(k)}: {json.dumps(shape)}" for k, shape in record.pop("keys").items())
    head = json.dumps(record, indent=1)[:-2]  # one key per line below
    path.write_text(f'{head},\n "keys": {{\n{keys}\n }}\n}}\n')
    return path


def check(name: str, root: Path, tol: float, seed: int, keys_out: Path | None) -> dict[str, Any]:
    spec = OFFICIAL[name]
    generator = torch.Generator().manual_seed(seed)
    official = load_official(name, root).eval()
    randomise(official, generator)
    if keys_out is not None:
        print(f"{name}: wrote {write_keys(name, root, official, keys_out)}", file=sys.stderr)
    state = {k: v.detach().clone() for k, v in official.state_dict().items()}  # float32, as published
    x = torch.rand(1, spec.in_channels, *spec.input_hw, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        official = official.double()
        reference = official(x) if spec.forward is None else spec.forward(official, x)
    files = {
        "basicsr_pth": {"params": state, "params_ema": state},
        "lightning_ckpt": {"state_dict": {f"net.{k}": v for k, v in state.items()}, "epoch": 0,
                           "global_step": 0, "pytorch-lightning_version": "2.0.0"},
    }
    results: dict[str, Any] = {"arch": spec.arch, "repo": spec.repo, "commit": commit_of(root),
                               "official_class": spec.class_name, "official_kwargs": spec.kwargs,
                               "parameters": sum(p.numel() for p in official.parameters()),
                               "input": list(x.shape), "dtype": "float64", "tol": tol, "files": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, payload in files.items():
            path = Path(tmp) / f"{name}{'.pth' if kind == 'basicsr_pth' else '.ckpt'}"
            torch.save(payload, path)
            for arch in (spec.arch, None):
                start = time.perf_counter()
                ours = exda.load_pretrained(path, arch=arch)
                with torch.no_grad():
                    out = ours.double()(x)
                diff = (out - reference).abs().max().item()
                results["files"][f"{kind}, arch={'inferred' if arch is None else arch}"] = {
                    "loaded_as": ours.model_name, "max_abs_diff": diff, "load_and_run_s": round(
                        time.perf_counter() - start, 2), "pass": ours.model_name == spec.arch and diff <= tol}
    results["pass"] = all(r["pass"] for r in results["files"].values())
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", nargs="+", required=True, metavar="NAME=DIR",
                        help=f"official checkouts; names: {', '.join(OFFICIAL)}")
    parser.add_argument("--pythonpath", action="append", default=[], help="extra import path (einops)")
    parser.add_argument("--tol", type=float, default=1e-10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--keys-out", type=Path, default=None, help="write official key lists here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path[:0] = args.pythonpath
    roots = {}
    for item in args.official:
        name, _, root = item.partition("=")
        if name not in OFFICIAL or not root:
            parser.error(f"--official takes NAME=DIR with NAME in {', '.join(OFFICIAL)}; got {item!r}")
        roots[name] = Path(root)
    results = {name: check(name, root, args.tol, args.seed, args.keys_out) for name, root in roots.items()}
    for name, r in results.items():
        for kind, f in r["files"].items():
            print(f"{name:10s} {kind:36s} -> {f['loaded_as']:10s} max|diff| {f['max_abs_diff']:.3e} "
                  f"{'ok' if f['pass'] else 'FAIL'}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        # models run now replace their earlier rows; the others' rows stay (each engineer runs their own)
        models = json.loads(args.json.read_text()).get("models", {}) if args.json.is_file() else {}
        record = {"torch": torch.__version__, "threads": args.threads, "seed": args.seed,
                  "models": {**models, **results}}
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0 if all(r["pass"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
