"""``exda eval``: score a checkpoint on a dataset and write results.csv, results.json, comparison.png.

The medical layout switches to AMIR's protocol (11x11 gaussian SSIM, data range = GT max - min).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from exda.commands.options import ARCH_HELP, CHECKPOINT_HELP, add_inference_arguments
from exda.data import LAYOUTS, build_dataset
from exda.engine.evaluate import evaluate_model
from exda.errors import UserError
from exda.inference.loader import load_network
from exda.inference.restorer import check_tiling, inference_device
from exda.metrics import SSIM_PROTOCOLS

SAMPLES = "samples"  # --data value meaning the built-in sample photos
GRID_PER_TASK = 1  # comparison.png: the first image of every task


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, help=CHECKPOINT_HELP)
    parser.add_argument("--arch", default=None, metavar="NAME", help=ARCH_HELP)
    parser.add_argument("--data", default=None,
                        help=f"dataset root; '{SAMPLES}' or omitted = built-in sample photos (synthetic)")
    parser.add_argument("--layout", choices=LAYOUTS, default=None,
                        help="folder layout (default: paired for a folder, synthetic for the samples)")
    parser.add_argument("--degradation", dest="degradations", action="extend", nargs="+", default=[],
                        metavar="NAME", help="degradations to synthesise (synthetic layout)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: eval-<data name>/ in the current folder)")
    parser.add_argument("--y-channel", action="store_true", help="PSNR/SSIM on BT.601 luma (Y)")
    parser.add_argument("--crop-border", type=int, default=0, metavar="N",
                        help="ignore N pixels at each border")
    parser.add_argument("--ssim-gaussian", action="store_true",
                        help="11x11 gaussian SSIM, population covariance (BasicSR, AMIR) instead of the 7x7 "
                             "uniform default")
    parser.add_argument("--ssim-protocol", choices=tuple(SSIM_PROTOCOLS), default=None,
                        help="SSIM as a code base computes it: skimage (default: 7x7 uniform, sample covariance), "
                             "basicsr (= --ssim-gaussian), moce_ir (MoCE-IR's test.py: gaussian, sample covariance)")
    parser.add_argument("--max-items", type=int, default=None, metavar="N", help="evaluate the first N items")
    parser.add_argument("--lpips", nargs="?", const="alex", default=None, choices=("alex", "vgg"), metavar="NET",
                        help="add LPIPS columns (lower is better; AlexNet by default, 'vgg' needs weights made by "
                             "scripts/convert_lpips.py); off by default: ~0.6 s per 512 px pair on one CPU thread")
    add_inference_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.crop_border < 0:
        raise UserError(f"--crop-border must be >= 0, got {args.crop_border}")
    if args.max_items is not None and args.max_items < 1:
        raise UserError(f"--max-items must be positive, got {args.max_items}")
    check_tiling(args.tile, args.tile_overlap)
    root = None if args.data in (None, SAMPLES) else Path(args.data)
    layout = args.layout or ("synthetic" if root is None else "paired")
    if root is None and layout != "synthetic":
        raise UserError(f"--layout {layout} needs --data pointing at a dataset folder")

    ssim_protocol = SSIM_PROTOCOLS[args.ssim_protocol] if args.ssim_protocol else {}
    if ssim_protocol and (args.ssim_gaussian or layout == "medical"):
        raise UserError("--ssim-protocol replaces --ssim-gaussian and the medical layout's SSIM; give one")
    device = inference_device(args.device)
    model, info = load_network(args.checkpoint, arch=args.arch, device=device)
    dataset = build_dataset(layout, root, "test", degradations=tuple(args.degradations),
                            in_channels=info.in_channels)
    medical = layout == "medical"
    if medical:
        print("exda eval: medical layout, AMIR protocol: gaussian SSIM, data range = GT max - min",
              file=sys.stderr)
    result = evaluate_model(
        model, dataset, device=device, crop_border=args.crop_border, y_channel=args.y_channel,
        ssim_gaussian=args.ssim_gaussian or medical or ssim_protocol.get("gaussian", False),
        ssim_sample_covariance=ssim_protocol.get("sample_covariance"), data_range_from_gt=medical, bf16=args.bf16,
        max_items=args.max_items, tile=args.tile, tile_overlap=args.tile_overlap,
        keep_per_task=GRID_PER_TASK, progress=True, lpips_net=args.lpips,
    )
    data_name = SAMPLES if root is None else root.resolve().name
    result.settings.update(checkpoint=str(info.path), model=info.arch, step=info.step,
                           ema=info.ema, data=str(root) if root else SAMPLES, layout=layout,
                           degradations=list(args.degradations))
    out = args.out if args.out is not None else Path(f"eval-{data_name}")
    result.to_csv(out / "results.csv")
    result.to_json(out / "results.json")
    result.save_grid(out / "comparison.png")
    print(result.to_markdown())
    print(f"wrote results.csv, results.json, comparison.png to {out}")
    return 0
