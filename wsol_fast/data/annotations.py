"""Reading annotation text, shared by every reader (CUB, ImageNet, wsolevaluation, localize's
``--annotations`` and ``--class-names``): non-blank numbered lines, errors that name file and
line, per-image tables (CUB's whitespace ``id value...``, wsolevaluation's ``path,value,...``),
the two box layouts (corners ``x0 y0 x1 y1``; CUB's ``x y w h``) and class-name files."""
from __future__ import annotations

import math
from collections.abc import Callable, Collection, Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from .records import AnnotationError

Fail = Callable[[str], AnnotationError]  # what is wrong -> the error for the current line

T = TypeVar("T")


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(lineno, line)`` for the non-blank lines of ``path``, line endings (and a BOM) removed."""
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    with open(path, encoding="utf-8-sig") as handle:
        for lineno, raw in enumerate(handle, start=1):
            line = raw.rstrip("\r\n")
            if line.strip():
                yield lineno, line


def annotation_error(path: Path, lineno: int, what: str, line: str) -> AnnotationError:
    """The error for line ``lineno`` (1-based) of ``path`` saying ``what`` is wrong with it."""
    return AnnotationError(f"{path}:{lineno}: {what}: {line!r}")


def _text_key(text: str, fail: Fail) -> str:
    return text


@dataclass(frozen=True)
class Listing:
    """The images a per-image table must cover: their ``keys`` in listing order, read from the
    file ``name``; a key is called ``noun`` in errors and read from a line's first field by
    ``key_of(text, fail)``. ``comma_separated``: lines split at the last commas (the key, an
    image path, may hold commas) and each field is stripped; else at whitespace, into exactly
    the fields."""

    keys: Collection[Hashable]
    name: str
    noun: str
    key_of: Callable[[str, Fail], Hashable] = _text_key
    comma_separated: bool = False


def read_per_image(
    path: Path, listing: Listing, value_count: int, parse_values: Callable[[list[str], Fail], T],
    several_per_image: bool = False, with_lines: bool = False,
) -> dict[Hashable, list[T]]:
    """Key -> its parsed values, one list entry per line of ``path`` (with ``with_lines``,
    ``(lineno, values)`` pairs); each line holds a key and ``value_count`` values, which
    ``parse_values(fields, fail)`` converts.

    Every image of ``listing`` needs a line (exactly one unless ``several_per_image``) and every
    line an image of ``listing``.
    """
    layout = "comma-separated " if listing.comma_separated else ""
    table: dict[Hashable, list[T]] = {}
    for lineno, line in numbered_lines(path):
        def fail(what: str, lineno: int = lineno, line: str = line) -> AnnotationError:
            return annotation_error(path, lineno, what, line)

        fields = ([field.strip() for field in line.rsplit(",", value_count)] if listing.comma_separated
                  else line.split())
        if len(fields) != value_count + 1:
            raise fail(f"expected {value_count + 1} {layout}fields, found {len(fields)}")
        key = listing.key_of(fields[0], fail)
        if key not in listing.keys:
            raise fail(f"unknown {listing.noun} {key!r} (not in {listing.name})")
        if key in table and not several_per_image:
            raise fail(f"duplicate line for {listing.noun} {key!r}")
        parsed = parse_values(fields[1:], fail)
        table.setdefault(key, []).append((lineno, parsed) if with_lines else parsed)
    missing = [key for key in listing.keys if key not in table]
    if missing:
        raise AnnotationError(f"{path}: no line for {len(missing)} {listing.noun}(s) listed in {listing.name}, "
                              f"e.g. {missing[:5]}")
    return table


def parse_corner_box(texts: list[str], fail: Fail) -> list[float]:
    """``[x0, y0, x1, y1]`` from four number strings; ``fail(what)`` builds the error to raise.

    The values must be finite with ``x1 >= x0`` and ``y1 >= y0`` (ImageNet's inclusive pixel
    coordinates make ``x1 == x0`` a one-pixel-wide box).
    """
    try:
        x0, y0, x1, y1 = (float(text) for text in texts)
    except ValueError:
        raise fail(f"box coordinates are not numbers ({' '.join(texts)!r})") from None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise fail("box coordinates must be finite")
    if x1 < x0 or y1 < y0:
        raise fail(f"box needs x1 >= x0 and y1 >= y0, found {x0:g} {y0:g} {x1:g} {y1:g}")
    return [x0, y0, x1, y1]


def parse_xywh_box(values: list[str], fail: Fail) -> np.ndarray:
    """``[[x, y, x + w, y + h]]`` float32 (1, 4) from ``x y w h`` strings (CUB's ``bounding_boxes.txt``);
    the values must be finite with w, h > 0."""
    try:
        x, y, w, h = (float(v) for v in values)
    except ValueError:
        raise fail("box values are not numbers") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise fail("box values must be finite")
    if w <= 0 or h <= 0:
        raise fail(f"box width and height must be positive, found w={w:g} h={h:g}")
    return np.array([[x, y, x + w, y + h]], dtype=np.float32)


def read_class_names(path: Path, numbered: bool | None = None) -> list[str]:
    """Class names, one a non-blank line: label k - 1 on the k-th line. ``numbered`` lines read
    ``k name`` (CUB's ``classes.txt``, ids 1, 2, 3... in order); None: numbered when every line
    is, else plain names."""
    lines = list(numbered_lines(path))
    if not lines:
        raise AnnotationError(f"{path}: no class names listed")
    split = [line.strip().split(None, 1) for _, line in lines]
    if numbered is None:
        numbered = all(len(parts) == 2 and parts[0] == str(k + 1) for k, parts in enumerate(split))
    if not numbered:
        return [line.strip() for _, line in lines]
    names = []
    for (lineno, line), parts in zip(lines, split):
        if len(parts) != 2:
            raise annotation_error(path, lineno, f"expected 2 fields, found {len(parts)}", line)
        if parts[0] != str(len(names) + 1):
            what = (f"class ids must run 1, 2, 3, ... in order; expected {len(names) + 1}" if parts[0].isdigit()
                    else f"class id is not an integer ({parts[0]!r})")
            raise annotation_error(path, lineno, what, line)
        names.append(parts[1])
    return names
