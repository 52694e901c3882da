"""Atomic checkpoint files: write to a temporary file in the same folder, fsync, rename. A
killed process or a full disk never leaves a truncated file under the final name."""
import os
from pathlib import Path

import torch


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


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint written by ``atomic_save`` (tensors and plain data only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors come in many types
        raise ValueError(f"cannot read checkpoint {path}: {error}") from error
