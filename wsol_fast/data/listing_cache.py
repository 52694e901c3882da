"""A cached listing of an ImageNet-style ``train/<class>/<file>`` tree, so a run starts in
seconds instead of listing 1.28 M files in every process.

The listing (class names, file names as one byte buffer with offsets, labels) is stored as a
``.npz`` (numpy arrays only, read with ``allow_pickle=False``: nothing in it can run) beside the
data (``<root>/.wsol_fast/train_listing.npz``), or under ``~/.cache/wsol_fast/`` when the data
folder is read-only. It is used only while its signature matches: the modification times of
``train/`` and of every class folder (adding, removing or renaming a file changes its folder's),
and the format version.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from .tables import PathTable

VERSION = 1
NAME = "train_listing.npz"


def folder_signature(train_dir: Path, classes: list[str]) -> np.ndarray:
    """(2 + C,) int64: the version, train/'s mtime and each class folder's (ns)."""
    times = [os.stat(train_dir / name).st_mtime_ns for name in classes]
    return np.array([VERSION, os.stat(train_dir).st_mtime_ns, *times], dtype=np.int64)


def cache_paths(train_dir: Path) -> list[Path]:
    """Where the listing may live, in order: beside the data, then the user's cache."""
    key = hashlib.sha1(str(train_dir.resolve()).encode()).hexdigest()[:16]
    home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wsol_fast"
    return [train_dir.parent / ".wsol_fast" / NAME, home / f"{key}_{NAME}"]


def load(train_dir: Path, classes: list[str]) -> tuple[PathTable, np.ndarray] | None:
    """``(paths, labels)`` from a cache whose signature matches the tree now, else None."""
    signature = folder_signature(train_dir, classes)
    for path in cache_paths(train_dir):
        try:
            with np.load(path, allow_pickle=False) as saved:
                if not np.array_equal(saved["signature"], signature) or list(saved["classes"]) != classes:
                    continue
                return PathTable(train_dir, saved["names"], saved["offsets"]), saved["labels"]
        except (OSError, KeyError, ValueError):  # absent, unreadable or from another format
            continue
    return None


def save(train_dir: Path, classes: list[str], paths: PathTable, labels: np.ndarray) -> Path | None:
    """Write the listing (atomically) to the first writable cache place; None if there is none."""
    signature = folder_signature(train_dir, classes)
    for path in cache_paths(train_dir):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
            np.savez(temporary, signature=signature, classes=np.array(classes), names=paths.data,
                     offsets=paths.offsets, labels=labels)
            os.replace(temporary, path)
            return path
        except OSError:
            continue
    return None
