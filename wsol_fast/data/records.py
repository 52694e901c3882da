"""The in-memory record of one dataset split, and the errors the data readers raise (the text
of annotation files is read by ``annotations``)."""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import WsolFastError
from .tables import BoxTable, PathTable


class AnnotationError(WsolFastError, ValueError):
    """A malformed annotation file; the message reads ``"{path}:{lineno}: {what}: {line!r}"``."""


class ImageReadError(WsolFastError, OSError):
    """An image that cannot be opened or decoded; the message names its path (and index)."""


def check_boxes_in_images(boxes: list[np.ndarray], sizes, where: Callable[[int], str]) -> None:
    """Refuse a ground-truth box lying entirely outside its image (no map could ever find it:
    ``AnnotationError`` at ``where(i)``, its file and line); count the boxes that stick out in part
    (the protocols clip them to the image, as the reference code does) in one warning. Images of
    unknown size (<= 0) are not checked."""
    partly = 0
    for index, (image_boxes, (width, height)) in enumerate(zip(boxes, sizes)):
        if width <= 0 or height <= 0 or not len(image_boxes):
            continue
        x0, y0, x1, y1 = image_boxes.T
        outside = (x0 >= width) | (y0 >= height) | (x1 <= 0) | (y1 <= 0)
        if outside.any():
            box = [round(float(v), 2) for v in image_boxes[outside][0]]
            raise AnnotationError(f"{where(index)}: box {box} lies entirely outside its {width}x{height} image")
        partly += int(((x0 < 0) | (y0 < 0) | (x1 > width) | (y1 > height)).sum())
    if partly:
        warnings.warn(f"{partly} ground-truth box(es) extend beyond their image; the protocols clip them to it",
                      RuntimeWarning, stacklevel=3)


@dataclass
class WSOLSplit:
    """One split of a WSOL dataset: image files, labels and ground-truth boxes.

    - ``root``: dataset root directory.
    - ``image_paths``: N paths (a ``tables.PathTable``; a list of paths is converted).
    - ``labels``: (N,) int64, 0-based class indices.
    - ``boxes``: N arrays, each (K, 4) float32 ``x0, y0, x1, y1`` in original pixel coordinates
      (K >= 1 for evaluation splits; K = 0 allowed where a split has no boxes); a
      ``tables.BoxTable``, a list of arrays is converted.
    - ``sizes``: (N, 2) int64 ``width, height`` of each original image.
    - ``class_names``: C names; label ``c`` is ``class_names[c]``.
    - ``skipped``: ``(path, problem)`` of the listed images the reader left out (``skip_bad_images``:
      missing, or a header it cannot read).
    - ``files_listed``: the paths come from listing their folders (ImageNet ``train/``), so they
      exist; the loaders then skip their start-up check that every file exists (1.28 M ``stat``
      calls, over a minute per process), and a file emptied since is reported when it is read.
    - ``masks``: None, or N per-image mask loaders (wsolevaluation OpenImages, ``masks.MaskFiles``):
      ``masks[i].load(size)`` -> (mask, ignore), each (size, size) bool, read only when called;
      such a split has no boxes (K = 0).
    """

    root: Path
    image_paths: PathTable
    labels: np.ndarray
    boxes: BoxTable
    sizes: np.ndarray
    class_names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    files_listed: bool = False
    masks: list | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.image_paths = PathTable.from_paths(self.image_paths)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.sizes = np.asarray(self.sizes, dtype=np.int64).reshape(-1, 2)
        self.boxes = BoxTable.from_arrays(self.boxes)
        self.class_names = list(self.class_names)
        n = len(self.image_paths)
        lengths = {"labels": len(self.labels), "boxes": len(self.boxes), "sizes": len(self.sizes)}
        if self.masks is not None:
            self.masks = list(self.masks)
            lengths["masks"] = len(self.masks)
        for name, length in lengths.items():
            if length != n:
                raise ValueError(f"WSOLSplit: {n} image paths but {length} {name}")
        if n and (self.labels.min() < 0 or self.labels.max() >= self.num_classes):
            raise ValueError(
                f"WSOLSplit: labels must lie in [0, {self.num_classes}), "
                f"got range [{self.labels.min()}, {self.labels.max()}]"
            )

    def __len__(self) -> int:
        return len(self.image_paths)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, indices) -> "WSOLSplit":
        """The samples at ``indices`` (in that order), same classes."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        return WSOLSplit(self.root, self.image_paths.take(indices), self.labels[indices],
                         self.boxes.take(indices), self.sizes[indices], self.class_names, self.skipped,
                         self.files_listed, None if self.masks is None else [self.masks[i] for i in indices])


def hold_out(split: WSOLSplit, fraction: float, seed: int = 0) -> tuple[WSOLSplit, WSOLSplit]:
    """Split ``split`` into (rest, validation): ``round(fraction * n_c)`` images of each class
    (at least one where a class has two or more), chosen by a seeded permutation."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must lie in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    held = []
    for label in range(split.num_classes):
        members = np.flatnonzero(split.labels == label)
        count = min(len(members) - 1, max(1, round(fraction * len(members)))) if len(members) > 1 else 0
        held.extend(rng.permutation(members)[:count].tolist())
    held_set = set(held)
    rest = [i for i in range(len(split)) if i not in held_set]
    return split.subset(rest), split.subset(sorted(held))
