"""One run per run folder: an exclusive lock held for the whole run.

The lock is ``flock`` on ``<folder>/run.lock``, which names its holder (pid, host, start time).
The kernel releases it when the holder exits, however it exits, so a lock file left by a killed
run is stale by construction: the next run takes it over and says whose it was. Under the
launcher rank 0 holds it and every rank learns whether it could.
"""
import contextlib
import fcntl
import os
import socket
import time
from pathlib import Path

import torch

from .. import collectives
from ..checkpoint import TEMPORARY_GLOB
from ..errors import WsolFastError
from . import distributed
from .progress import print_message

LOCK_NAME = "run.lock"


class RunFolderBusyError(WsolFastError, OSError):
    """Another live process holds the run folder's lock."""


@contextlib.contextmanager
def run_folder_lock(folder: str | Path):
    """Hold ``folder``'s lock (rank 0) for the ``with`` block; every rank raises
    ``RunFolderBusyError`` when another run holds it. Partial checkpoint files that a killed
    save left in the folder are removed once the lock is held."""
    folder, handle, error = Path(folder), None, None
    if collectives.is_main():
        try:
            handle = _acquire(folder)
        except OSError as failure:  # busy, or the folder cannot be made: every rank stops
            error = failure
    refused = collectives.all_reduce_sum_(torch.tensor([float(error is not None)], device=distributed.device()))
    if refused.item():
        raise error or RunFolderBusyError(f"another run holds the lock of {folder} (see rank 0)")
    try:
        yield
    finally:
        if handle is not None:
            handle.truncate(0)
            handle.close()  # releases the flock


def _acquire(folder: Path):
    """Lock ``folder/run.lock`` (created if absent) and write this process into it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "an unknown process"
        handle.close()
        raise RunFolderBusyError(f"another run is using {folder}: {holder} holds {path}; wait for it to end "
                                 "or pass another --out") from None
    handle.seek(0)
    previous = handle.read().strip()
    if previous:
        print_message(f"took over {path} from {previous}, which is no longer running", "note:", "yellow")
    handle.truncate(0)
    handle.write(f"process {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    for partial in sorted(folder.glob(TEMPORARY_GLOB)):
        partial.unlink(missing_ok=True)
        print_message(f"removed {partial}, a partial checkpoint left by a killed save", "note:", "yellow")
    return handle
