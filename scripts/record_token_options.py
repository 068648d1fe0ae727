"""Record the global token's options in exda checkpoints saved before checkpoints recorded them.

    python scripts/record_token_options.py CHECKPOINT.safetensors [...]

Such a checkpoint (``model_kwargs`` without ``token_*``) was trained with the token's first reading, the
only one there was: grid 4, nearest up-pooling, raw softmax, no column scale, raw X_in. exda refuses to
load it rather than build today's default token; this script adds those options to its ``model_kwargs``
metadata and to the model kwargs of the config in its JSON record. The tensors are copied unchanged; where
the JSON records the weights' SHA-256, it is updated. The shipped ``exda/weights/exda_{photo,medical}``
were converted this way.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from exda.atomic import atomic_write
from exda.inference.checkpoint_format import INFO_SUFFIX, WEIGHTS_SUFFIX, file_digest
from exda.layers.global_token import token_kwargs
from exda.models import create_model

FIRST_READING = dict(token_grid=4, token_upsample="nearest", token_softmax="raw", token_column_scale="none",
                     token_input="raw")


def record(weights: Path) -> str:
    """Add the first reading's token options to the checkpoint ``weights``; what was done, in words."""
    with safe_open(str(weights), framework="pt") as f:
        metadata = f.metadata()
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    kwargs = json.loads(metadata["model_kwargs"])
    with torch.device("meta"):
        options = token_kwargs(create_model(metadata["model_name"], **kwargs))
    if not options or options.keys() <= kwargs.keys():
        return "nothing to record (no global token, or its options are recorded)"
    metadata["model_kwargs"] = json.dumps({**FIRST_READING, **kwargs})
    payload = safetensors_bytes(tensors, metadata=metadata)
    atomic_write(weights, lambda tmp: tmp.write_bytes(payload))

    info = weights.with_name(weights.name.removesuffix(WEIGHTS_SUFFIX) + INFO_SUFFIX)
    if info.is_file():
        record = json.loads(info.read_text())
        model = record.get("config", {}).get("model", {})
        if isinstance(model.get("kwargs"), dict):
            model["kwargs"] = {**FIRST_READING, **model["kwargs"]}
        if WEIGHTS_SUFFIX in record.get("files", {}):
            record["files"][WEIGHTS_SUFFIX] = file_digest(weights)
        text = json.dumps(record, indent=2) + "\n"
        atomic_write(info, lambda tmp: tmp.write_text(text))
    return "recorded " + ", ".join(f"{key}={value}" for key, value in FIRST_READING.items())


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__.split("\n\n")[1])
    for path in sys.argv[1:]:
        print(f"{path}: {record(Path(path))}")
