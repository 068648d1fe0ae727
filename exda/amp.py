"""Mixed precision: the one autocast context that training and inference share."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """bf16 autocast on CPU and CUDA, fp16 on CUDA (training pairs it with a GradScaler), none for fp32."""
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)
