"""Data-parallel training with ``torchrun``: process-group set-up, rank helpers and clean shutdown.

``torchrun --nproc_per_node=N -m exda train ...`` sets RANK, WORLD_SIZE, LOCAL_RANK (and the rendezvous
address); without them the run is a single process and no process group is created.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from exda.errors import UserError


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job; ``is_main`` (rank 0) is the only one that writes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(choice: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when present; each process uses the GPU of its LOCAL_RANK."""
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise UserError("train.device is cuda but no CUDA device is available; use cpu or auto")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def context_from_env() -> DistContext:
    """Read the ranks torchrun exports; defaults describe a single process."""
    return DistContext(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


@contextmanager
def distributed_session(device: torch.device) -> Iterator[DistContext]:
    """Join the process group (nccl on CUDA, gloo on CPU) if launched with several ranks, then leave it.

    All ranks meet at a barrier before the group is destroyed, so no rank exits while others still
    need it (for example while rank 0 writes the final checkpoint).
    """
    ctx = context_from_env()
    if not ctx.enabled or dist.is_initialized():
        yield ctx
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group(backend=backend, rank=ctx.rank, world_size=ctx.world_size, **kwargs)
    try:
        yield ctx
        dist.barrier()
    finally:
        dist.destroy_process_group()


def mean_across_ranks(value: float, ctx: DistContext, device: torch.device) -> float:
    """Average a scalar over all ranks (for logging the global loss)."""
    if not ctx.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / ctx.world_size
