"""A cached listing of an ImageNet-style ``train/<class>/<file>`` tree, so a run starts in
seconds instead of listing 1.28 M files in every process.

The listing (class names, file names as one byte buffer with offsets, labels) is stored as a
``.npz`` (numpy arrays only, read with ``allow_pickle=False``: nothing in it can run) beside the
data (``<root>/.wsol_fast/train_listing.npz``), or under ``~/.cache/wsol_fast/`` when the data
folder is read-only. It is used only while its signature matches: the modification times of
``train/`` and of every class folder (adding, removing or renaming a file changes its folder's),
and the format version. A copy that restores the folders' old times (``rsync -a``, ``tar``)
or a file system with whole-second times can hide a change: delete ``<root>/.wsol_fast/`` (and
the user cache file) to force a fresh listing.
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
    """``(paths, labels)`` from a cache whose signature matches the tree now and whose arrays
    are consistent, else None (a missing, truncated, foreign or tampered file is listed anew)."""
    signature = folder_signature(train_dir, classes)
    for path in cache_paths(train_dir):
        if not path.is_file():
            continue
        try:
            with np.load(path, allow_pickle=False) as saved:
                if not np.array_equal(saved["signature"], signature) or list(saved["classes"]) != classes:
                    continue
                names, offsets, labels = saved["names"], saved["offsets"], saved["labels"]
        except Exception:  # noqa: BLE001 - whatever np.load raises on a bad file, the folders are listed
            continue
        if consistent(names, offsets, labels, len(classes)):
            return PathTable(train_dir, names, offsets), labels
    return None


def consistent(names: np.ndarray, offsets: np.ndarray, labels: np.ndarray, classes: int) -> bool:
    """The arrays describe ``len(offsets) - 1`` names inside ``names`` and labels of ``classes``."""
    return (names.dtype == np.uint8 and offsets.dtype == np.int64 and labels.dtype == np.int64
            and offsets.ndim == labels.ndim == 1 and len(offsets) == len(labels) + 1 and offsets[0] == 0
            and offsets[-1] == len(names) and bool(np.all(np.diff(offsets) > 0))
            and (not len(labels) or (labels.min() >= 0 and labels.max() < classes)))


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
