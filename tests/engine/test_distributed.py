"""DDP on CPU (gloo): 2 ranks x batch b train the same weights as 1 process x batch 2b, on every rank."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

from exda.engine.config import config_from_dict
from exda.engine.distributed import distributed_session
from exda.engine.trainer import Trainer

STEPS = 3


def _config(batch_size: int) -> dict[str, Any]:
    return {
        "model": {"name": "exda_restormer_test"},
        "data": {"layout": "synthetic", "root": None, "degradations": ["noise25", "haze"], "patch_size": 16,
                 "batch_size": batch_size, "num_workers": 0, "length": 8},
        "optim": {"lr": 1e-3, "warmup_iters": 1, "grad_clip": 0.5},
        "train": {"iters": STEPS, "val_every": 0, "ckpt_every": 0, "log_every": 1, "ema_decay": 0.5,
                  "seed": 1, "device": "cpu"},
    }


def _run(rank: int, world_size: int, port: int, batch_size: int, run_dir: Path, out: Path) -> None:
    """One rank: train, then save its final weights for the test to compare (test-side write).

    With ``world_size`` 1 it runs in the calling process and leaves its environment alone.
    """
    if world_size > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                          WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
        torch.set_num_threads(1)  # two ranks share the machine's cores
    device = torch.device("cpu")
    with distributed_session(device) as ctx:
        trainer = Trainer(config_from_dict(_config(batch_size)), run_dir, device, ctx)
        trainer.fit()
        torch.save({"model": trainer.model.state_dict(), "ema": trainer.ema.module.state_dict()},
                   out / f"rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_ranks_match_one_process_with_the_same_global_batch(tmp_path: Path) -> None:
    ddp_out, single_out = tmp_path / "ddp_weights", tmp_path / "single_weights"
    ddp_out.mkdir()
    single_out.mkdir()
    mp.spawn(_run, args=(2, _free_port(), 2, tmp_path / "ddp_run", ddp_out), nprocs=2, join=True)
    _run(0, 1, 0, 4, tmp_path / "single_run", single_out)

    rank0, rank1 = (torch.load(ddp_out / f"rank{r}.pt") for r in (0, 1))
    single = torch.load(single_out / "rank0.pt")
    for group in ("model", "ema"):
        for name, tensor in single[group].items():
            assert torch.equal(rank0[group][name], rank1[group][name]), f"ranks differ at {group}.{name}"
            torch.testing.assert_close(rank0[group][name], tensor, rtol=0, atol=1e-5, msg=f"{group}.{name}")
    # Only rank 0 wrote the run folder, and it holds the final checkpoint.
    assert (tmp_path / "ddp_run" / "checkpoints" / "last.json").is_file()
    assert sorted(p.name for p in (tmp_path / "ddp_run").iterdir()) == ["checkpoints", "tb", "train.log"]
