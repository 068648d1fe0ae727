"""Copy the EMA weights of a finished run into the package as a shipped default model.

    python scripts/ship_default.py runs/default_photo photo     -> exda/weights/exda_photo.{safetensors,json}
    python scripts/ship_default.py runs/default_medical medical -> exda/weights/exda_medical.{safetensors,json}

Only the (EMA) weights, the model name/kwargs, the step, the resolved config and the last validation
metrics are kept; no optimiser state.
"""

from __future__ import annotations

import sys
from pathlib import Path

from exda.engine.checkpoint import save_checkpoint
from exda.inference.loader import load_network
from exda.inference.pretrained import DEFAULT_MODELS, WEIGHTS_DIR


def main(run: Path, kind: str) -> None:
    model, info = load_network(run, use_ema=True)
    path = save_checkpoint(WEIGHTS_DIR, DEFAULT_MODELS[kind], model=model, config=info.config,
                           step=info.step, metrics=info.metrics, train_state=None)
    # a kept step checkpoint (train.keep_steps) holds one set of weights, the EMA's, stored as its model
    weights = "its EMA weights" if info.ema else "its only weights (a kept step's are the EMA's)"
    print(f"{info.arch} step {info.step}, {weights} -> {path} ({path.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[2] not in DEFAULT_MODELS:
        sys.exit(f"usage: python scripts/ship_default.py RUN_DIR {{{','.join(DEFAULT_MODELS)}}}")
    main(Path(sys.argv[1]), sys.argv[2])
