"""Atomic checkpoint files: write to a temporary file in the same folder, fsync, rename. A
killed process or a full disk never leaves a truncated file under the final name."""
import os
import pickle
from pathlib import Path

import torch

from .errors import WsolFastError


TEMPORARY_GLOB = ".*.tmp-*"  # the partial files of atomic_save (``.NAME.tmp-PID``) in a folder


def atomic_save(obj, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as error:  # full disk, quota (torch.save reports them as RuntimeError)
        raise OSError(f"could not write checkpoint {path}: {error}; the previous file there, if any, "
                      "is unchanged") from error
    finally:
        tmp.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path


class CheckpointError(WsolFastError, ValueError):
    """A checkpoint file that cannot be used: unreadable, truncated, refused (it asks to run code),
    of another model, or holding non-finite weights. The message names the file."""


def load_checkpoint(path: str | Path, map_location=None, safe_globals: tuple = ()) -> dict:
    """Load a checkpoint with ``weights_only=True``: tensors and plain data, plus the classes in
    ``safe_globals``; nothing in the file can run code. ``map_location`` defaults to the CPU."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location=map_location or "cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = [line for line in str(error).splitlines() if "GLOBAL" in line or "global" in line]
        raise CheckpointError(f"refused to load checkpoint {path}: it holds objects other than tensors and plain "
                              f"data, which could run code ({(refused or [type(error).__name__])[0].strip()})"
                              ) from error
    except Exception as error:  # truncated zips, bad pickles: many types
        gist = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise CheckpointError(f"cannot read checkpoint {path}: {gist.split('. This is')[0]}") from error
