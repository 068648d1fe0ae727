"""One ``exda train`` per run folder at a time: an advisory lock on ``<run>/.exda-train.lock``.

``fcntl.flock`` is released by the kernel when the holding process ends, however it ends (``kill -9``
and power loss included), so a crashed run leaves no stale lock and ``--resume`` works at once. The lock
file stays in the folder (removing it on exit would race with a run that just opened it); it holds the
holder's process id, which the refusal names. Under ``torchrun`` only rank 0 takes it: the other ranks
of the same job share the folder by design. Where ``fcntl`` does not exist (Windows) there is no lock.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from exda.errors import UserError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

LOCK_NAME = ".exda-train.lock"


@contextmanager
def run_lock(run_dir: str | Path, *, enabled: bool = True) -> Iterator[None]:
    """Hold the run folder's lock for the duration of the block; one line (a UserError) when another
    process holds it. ``enabled=False`` (a non-zero torchrun rank) takes no lock."""
    if not enabled or fcntl is None:
        yield
        return
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(run_dir / LOCK_NAME, "a+")
    except OSError as err:
        raise UserError(f"cannot use {run_dir} as the run folder: {err.strerror or err}") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            by = f" (process {holder})" if holder.isdigit() else ""
            raise UserError(f"{run_dir} is in use by another exda train{by}; wait for it to finish, or choose "
                            "another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing the file releases the lock
