"""Ground-truth masks of a wsolevaluation OpenImages split: the mask files of one image
(``MaskFiles``, named by ``localization.txt``) and their reading at the evaluation size, as
wsolevaluation's ``get_mask`` does it.

Each PNG is read as 8-bit grey, resized to (size, size) with OpenCV's ``INTER_NEAREST`` rule
(source pixel ``floor(i * in / out)``), and cut at ``> 0.5`` (any non-zero pixel). The mask is
the union of the image's instance masks; the ignore pixels are the union of its ignore masks
minus the mask (wsolevaluation lists one ignore mask an image; several are allowed here, none
means no ignore pixels). Files are read only when ``load`` is called, so a split of tens of
thousands of images holds paths, not pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .records import ImageReadError


def nearest_indices(source: int, size: int) -> np.ndarray:
    """(size,) int64 source rows (or columns) of OpenCV's ``INTER_NEAREST`` resize from ``source``."""
    scale = 1.0 / (size / source)  # OpenCV's inverse scale, in double precision
    return np.minimum(np.floor(np.arange(size) * scale).astype(np.int64), source - 1)


def read_mask_png(path: Path, size: int, where: str) -> np.ndarray:
    """(size, size) bool: pixels of the grey image ``path`` above 0.5 after the nearest resize;
    errors name ``path`` and ``where`` (the annotation line that lists it)."""
    try:
        with Image.open(path) as image:
            grey = np.asarray(image.convert("L"))
    except FileNotFoundError:
        raise FileNotFoundError(f"mask file not found: {path} ({where})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"cannot read mask {path} ({where}): {exc}") from exc
    rows, columns = nearest_indices(grey.shape[0], size), nearest_indices(grey.shape[1], size)
    return grey[rows[:, None], columns[None, :]] > 0.5


@dataclass(frozen=True)
class MaskFiles:
    """The mask files of one image: ``masks`` (its instances, at least one), ``ignores`` (its
    ignore regions, maybe none) and ``where`` (``localization.txt:LINE`` of its first line)."""

    masks: tuple[Path, ...]
    ignores: tuple[Path, ...]
    where: str

    def load(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(mask, ignore), each (size, size) bool; ignore and mask never overlap."""
        mask = self._union(self.masks, size)
        return mask, self._union(self.ignores, size) & ~mask

    def _union(self, paths: tuple[Path, ...], size: int) -> np.ndarray:
        """(size, size) bool: the pixels of any of the mask files ``paths`` (none: all False)."""
        union = np.zeros((size, size), dtype=bool)
        for path in paths:
            union |= read_mask_png(path, size, self.where)
        return union


def load_masks(files: list[MaskFiles], size: int) -> tuple[np.ndarray, np.ndarray]:
    """(masks, ignore), each (B, size, size) bool: ``MaskFiles.load`` of each of the B images."""
    pairs = [mask_files.load(size) for mask_files in files]
    return np.stack([mask for mask, _ in pairs]), np.stack([ignore for _, ignore in pairs])
