"""``exda analyze {embeddings,spectra,separability}``: analyses of one or more checkpoints on the sample
photos under several degradations; each writes <name>.json and a figure into --out."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from exda.analysis.common import DEFAULT_DEGRADATIONS, load_model, probe_set

ANALYSES = ("embeddings", "spectra", "separability")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("analysis", choices=ANALYSES)
    parser.add_argument("--checkpoint", dest="checkpoints", type=Path, action="append", default=[],
                        help="checkpoint (exda's, a run folder or a published .pth / .ckpt) to analyse; repeat to "
                             "compare (default: the shipped photo model)")
    parser.add_argument("--arch", default=None, metavar="NAME",
                        help="model of a published --checkpoint (`exda models`), the same for each; default: "
                             "inferred from its weights")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--degradation", dest="degradations", action="extend", nargs="+", default=[],
                        metavar="NAME", help=f"degradations (default: {' '.join(DEFAULT_DEGRADATIONS)})")
    parser.add_argument("--crop", type=int, default=96, help="crop size in pixels (default 96)")
    parser.add_argument("--per-photo", type=int, default=2, help="random crops per sample photo (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def run(args: argparse.Namespace) -> int:
    from exda.analysis.embeddings import run_embeddings
    from exda.analysis.separability import run_separability
    from exda.analysis.spectra import run_spectra

    if args.threads:
        torch.set_num_threads(args.threads)
    models = [load_model(path, args.arch) for path in (args.checkpoints or [None])]  # a bad checkpoint fails first
    probe = probe_set(tuple(args.degradations) or DEFAULT_DEGRADATIONS, args.crop, args.per_photo, args.seed)
    labels = [label for _, label in models]
    models = [(label if labels.count(label) == 1 else f"{label} #{i + 1}", model)
              for i, (model, label) in enumerate(models)]
    if args.analysis == "embeddings":
        run_embeddings(models, probe, args.out)
    elif args.analysis == "spectra":
        run_spectra(models, probe, args.out)
    else:
        run_separability(models, probe, args.out, args.seed)
    print(f"wrote {args.analysis}.json and figures to {args.out}")
    return 0
