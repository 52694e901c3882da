"""Array-backed columns of a split: no Python object per sample, so an ImageNet-scale split
(1.28 M files) costs tens of megabytes, not hundreds, and DataLoader workers forked from the
training process keep sharing its pages (reading an array element touches no reference count).

- ``PathTable``: N file names in one UTF-8 buffer with (N + 1,) offsets, relative to a ``base``
  folder (empty: the names are whole paths); ``table[i]`` is a ``Path``.
- ``BoxTable``: the N per-image (K_i, 4) float32 box arrays as one (M, 4) array with (N + 1,)
  offsets; ``table[i]`` is a view.
Both support ``len``, iteration, integer indexing and ``take(indices)``.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np


def _offsets(lengths: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def _gather(data: np.ndarray, offsets: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows ``indices`` (negative ones count from the end) of a ragged (data, offsets) table,
    as a new (data, offsets)."""
    count = len(offsets) - 1
    if len(indices) and (indices.min() < -count or indices.max() >= count):
        raise IndexError(f"row indices must lie in [-{count}, {count}), got [{indices.min()}, {indices.max()}]")
    indices = np.where(indices < 0, indices + count, indices)
    starts, stops = offsets[indices], offsets[indices + 1]
    new_offsets = _offsets(stops - starts)
    if not len(indices):
        return data[:0].copy(), new_offsets
    positions = np.repeat(starts - new_offsets[:-1], stops - starts) + np.arange(new_offsets[-1])
    return data[positions], new_offsets


class PathTable(Sequence):
    """N paths: ``base`` joined with name i, where names are slices of one byte buffer."""

    def __init__(self, base: str | Path, data: np.ndarray, offsets: np.ndarray):
        self.base = str(base)
        self.data = np.asarray(data, dtype=np.uint8)
        self.offsets = np.asarray(offsets, dtype=np.int64)

    @classmethod
    def from_names(cls, base: str | Path, names: Iterable[str]) -> PathTable:
        """Paths ``base / name`` (``base`` "" for names that are paths themselves)."""
        encoded = [os.fsencode(name) for name in names]
        offsets = _offsets(np.fromiter((len(name) for name in encoded), dtype=np.int64, count=len(encoded)))
        return cls(base, np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets)

    @classmethod
    def from_paths(cls, paths: Iterable) -> PathTable:
        if isinstance(paths, PathTable):
            return paths
        return cls.from_names("", (str(path) for path in paths))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> Path:
        if isinstance(index, slice):
            return self.take(np.arange(len(self))[index])
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"path index {index} out of range for {len(self)} paths")
        index %= len(self)
        name = os.fsdecode(self.data[self.offsets[index]:self.offsets[index + 1]].tobytes())
        return Path(self.base, name) if self.base else Path(name)

    def take(self, indices) -> PathTable:
        data, offsets = _gather(self.data, self.offsets, np.asarray(indices, dtype=np.int64).reshape(-1))
        return PathTable(self.base, data, offsets)

    def strings(self, indices) -> list[str]:
        """The paths at ``indices`` as strings, decoded in bulk (no ``Path`` object each)."""
        table = self.take(indices)
        raw, prefix = table.data.tobytes(), self.base + os.sep if self.base else ""
        bounds = table.offsets.tolist()
        return [prefix + os.fsdecode(raw[start:stop]) for start, stop in zip(bounds[:-1], bounds[1:])]

    def __eq__(self, other) -> bool:
        """Equal to any sequence of the same paths (a list of ``Path`` or ``str`` included)."""
        if not isinstance(other, Sequence) or isinstance(other, str) or len(other) != len(self):
            return NotImplemented if not isinstance(other, Sequence) else False
        return all(mine == Path(theirs) for mine, theirs in zip(self, other))

    __hash__ = None

    @property
    def nbytes(self) -> int:
        return self.data.nbytes + self.offsets.nbytes


class BoxTable(Sequence):
    """N (K_i, 4) float32 box arrays stored as one (M, 4) array and (N + 1,) offsets."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray):
        self.data = np.asarray(data, dtype=np.float32).reshape(-1, 4)
        self.offsets = np.asarray(offsets, dtype=np.int64)

    @classmethod
    def from_arrays(cls, boxes: Iterable) -> BoxTable:
        if isinstance(boxes, BoxTable):
            return boxes
        arrays = [np.asarray(b, dtype=np.float32).reshape(-1, 4) for b in boxes]
        data = np.concatenate(arrays) if arrays else np.zeros((0, 4), dtype=np.float32)
        return cls(data, _offsets(np.array([len(a) for a in arrays], dtype=np.int64)))

    @classmethod
    def empty(cls, count: int) -> BoxTable:
        """``count`` images without boxes (a training split)."""
        return cls(np.zeros((0, 4), dtype=np.float32), np.zeros(count + 1, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> np.ndarray:
        if isinstance(index, slice):
            return self.take(np.arange(len(self))[index])
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"box index {index} out of range for {len(self)} images")
        index %= len(self)
        return self.data[self.offsets[index]:self.offsets[index + 1]]

    def take(self, indices) -> BoxTable:
        data, offsets = _gather(self.data, self.offsets, np.asarray(indices, dtype=np.int64).reshape(-1))
        return BoxTable(data, offsets)

    @property
    def nbytes(self) -> int:
        return self.data.nbytes + self.offsets.nbytes
