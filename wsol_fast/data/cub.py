"""Reader for the official CUB-200-2011 layout (also written by ``synthetic.generate_synthetic``).

Files under the root: ``images.txt`` (``id relpath``), ``image_class_labels.txt`` (``id class``,
1-based), ``train_test_split.txt`` (``id is_train``), ``bounding_boxes.txt`` (``id x y w h``,
floats), ``classes.txt`` (``id name``, ids 1..C in order), images under ``images/``.
Blank lines are ignored; anything else malformed raises ``AnnotationError`` naming file and line.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from .annotations import (Fail, Listing, annotation_error, numbered_lines, parse_xywh_box, read_class_names,
                          read_per_image)
from .records import AnnotationError, ImageReadError, WSOLSplit, check_boxes_in_images

SPLITS = ("train", "test")

T = TypeVar("T")


def _fields(path: Path, lineno: int, line: str, count: int, free_text_last: bool) -> list[str]:
    """Split a line into exactly ``count`` fields (the last may hold spaces if ``free_text_last``)."""
    fields = line.strip().split(None, count - 1) if free_text_last else line.split()
    if len(fields) != count:
        raise annotation_error(path, lineno, f"expected {count} fields, found {len(fields)}", line)
    return fields


def _read_images(path: Path) -> dict[int, tuple[str, int]]:
    """Map image id -> (relative path, line number), in file order."""
    images: dict[int, tuple[str, int]] = {}
    for lineno, line in numbered_lines(path):
        id_text, relpath = _fields(path, lineno, line, 2, free_text_last=True)
        image_id = _image_id(id_text, lambda what: annotation_error(path, lineno, what, line))
        if image_id in images:
            raise annotation_error(path, lineno, f"duplicate image id {image_id}", line)
        images[image_id] = (relpath, lineno)
    if not images:
        raise AnnotationError(f"{path}: no images listed")
    return images


def _image_id(text: str, fail: Fail) -> int:
    try:
        return int(text)
    except ValueError:
        raise fail(f"image id is not an integer ({text!r})") from None


def _first_values(path: Path, listing: Listing, value_count: int, parse_values: Callable[[list[str], Fail], T]
                  ) -> dict[int, T]:
    """Image id -> the parsed values of its one line of the ``id value...`` file ``path``."""
    return {image_id: values for image_id, (values,) in read_per_image(path, listing, value_count,
                                                                        parse_values).items()}


def _class_parser(num_classes: int):
    def parse(values: list[str], fail: Fail) -> int:
        try:
            class_id = int(values[0])
        except ValueError:
            raise fail(f"class id is not an integer ({values[0]!r})") from None
        if not 1 <= class_id <= num_classes:
            raise fail(f"class id {class_id} out of range 1..{num_classes}")
        return class_id - 1

    return parse


def _parse_is_train(values: list[str], fail: Fail) -> bool:
    if values[0] not in ("0", "1"):
        raise fail(f"is_train must be 0 or 1, found {values[0]!r}")
    return values[0] == "1"


def _line_of(path: Path, image_id: int) -> int:
    """The line of ``path`` (an ``id ...`` file) that holds ``image_id`` (for error messages)."""
    return next(lineno for lineno, line in numbered_lines(path) if line.split()[0] == str(image_id))


def read_image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image from its header (no full decode)."""
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageReadError(f"cannot read image header of {path}: {exc}") from exc


def read_image_sizes(paths: list[Path], skip_bad_images: bool, where: list[str]
                     ) -> tuple[list[int], list[tuple[int, int]], list[tuple[str, str]]]:
    """Header sizes of ``paths``: ``(indices read, their (width, height), skipped (path, problem))``.
    A missing or unreadable image raises (its ``where``, e.g. the annotation line, in the message)
    unless ``skip_bad_images``, which leaves it out and records it."""
    kept, sizes, skipped = [], [], []
    for index, (path, place) in enumerate(zip(paths, where)):
        try:
            sizes.append(read_image_size(path))
        except (FileNotFoundError, ImageReadError) as error:
            if not skip_bad_images:
                raise type(error)(f"{error} ({place}; pass --skip-bad-images to leave such files out)") from error
            skipped.append((str(path), str(error)))
            continue
        kept.append(index)
    return kept, sizes, skipped


def read_cub(root: str | Path, split: str, skip_bad_images: bool = False) -> WSOLSplit:
    """Read the ``"train"`` or ``"test"`` split of a CUB-200-2011-layout dataset at ``root``.

    Images keep the order of ``images.txt``. Boxes are (1, 4) float32 ``x0, y0, x1, y1`` with
    ``x1 = x + w``, ``y1 = y + h``; sizes come from the image headers. With ``skip_bad_images``
    an image that is missing or whose header cannot be read is left out and listed in ``skipped``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"CUB-200-2011 root directory not found: {root}")
    class_names = read_class_names(root / "classes.txt", numbered=True)
    images = _read_images(root / "images.txt")
    listing = Listing(images, "images.txt", "image id", key_of=_image_id)
    labels = _first_values(root / "image_class_labels.txt", listing, 1, _class_parser(len(class_names)))
    is_train = _first_values(root / "train_test_split.txt", listing, 1, _parse_is_train)
    boxes = _first_values(root / "bounding_boxes.txt", listing, 4, parse_xywh_box)

    listed = [image_id for image_id in images if is_train[image_id] == (split == "train")]
    kept, sizes, skipped = read_image_sizes(
        [root / "images" / images[i][0] for i in listed], skip_bad_images,
        [f"image id {i}, {root / 'images.txt'}:{images[i][1]}" for i in listed])
    selected = [listed[k] for k in kept]
    box_file = root / "bounding_boxes.txt"
    check_boxes_in_images([boxes[i] for i in selected], sizes,
                          lambda k: f"{box_file}:{_line_of(box_file, selected[k])} (image id {selected[k]})")
    return WSOLSplit(
        root=root,
        image_paths=[root / "images" / images[i][0] for i in selected],
        labels=np.array([labels[i] for i in selected], dtype=np.int64),
        boxes=[boxes[i] for i in selected],
        sizes=np.array(sizes, dtype=np.int64).reshape(-1, 2),
        class_names=class_names,
        skipped=skipped,
    )
