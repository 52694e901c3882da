"""Image-file checks shared by both loaders: what to refuse up front, and which files of a
failed DALI batch are to blame.

DALI stops a whole batch (and its pipeline) on one bad file, and its message does not always name
the file, so the loaders check cheaply before they start (``file_problem``: one ``stat`` per
file; ``header_problem``: the first and last bytes, only where bad images are to be skipped) and,
when DALI fails at run time, decode the candidate files on the host to find the culprit
(``undecodable``).
"""
from __future__ import annotations

import os
from pathlib import Path

from .images import load_rgb
from .records import ImageReadError

# Leading bytes of the image formats the loaders know (WebP: RIFF....WEBP, see ``image_kind``).
IMAGE_SIGNATURES = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
)
# Formats PIL (the torch loader) decodes and DALI's decoders do not: named per file, never fed to DALI.
DALI_UNDECODABLE = ("gif",)
# A complete file ends with its end marker within this many bytes (trailing padding allowed).
END_MARKERS = {"jpeg": b"\xff\xd9", "png": b"IEND"}
TAIL_BYTES = 1024


def file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be an image file ("missing", "not a regular file", "empty"), else None."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return "missing"
    except OSError as error:
        return f"unreadable ({error.strerror})"
    if not os.path.isfile(path):
        return "not a regular file"
    if status.st_size == 0:
        return "empty"
    return None


def image_kind(head: bytes) -> str | None:
    """The format named by a file's first 12 bytes ("jpeg", "png", ..., "webp"), or None."""
    kind = next((name for signature, name in IMAGE_SIGNATURES if head.startswith(signature)), None)
    if kind is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        kind = "webp"
    return kind


def header_problem(path: Path, unsupported: tuple[str, ...] = ()) -> str | None:
    """``file_problem``, or an unknown leading signature or a format in ``unsupported`` (by the
    loader asking), or a JPEG/PNG without its end marker (a truncated file); None when the cheap
    checks pass (the file may still fail to decode)."""
    problem = file_problem(path)
    if problem is not None:
        return problem
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - TAIL_BYTES))
            tail = handle.read()
    except OSError as error:
        return f"unreadable ({error.strerror})"
    kind = image_kind(head)
    if kind is None:
        return f"not an image (leading bytes {head[:4].hex()})"
    if kind in unsupported:
        return f"{kind} image: the DALI loader cannot decode {kind} (use --loader torch, or convert the file)"
    if kind in END_MARKERS and END_MARKERS[kind] not in tail:
        return f"truncated {kind} (no end marker)"
    return None


def find_problems(paths: list[Path], indices, check=file_problem) -> list[tuple[int, Path, str]]:
    """``(index, path, problem)`` of the files among ``paths[indices]`` that ``check`` refuses
    (``file_problem``: one stat each; ``header_problem``: also reads a few bytes)."""
    found = []
    for index in indices:
        problem = check(paths[index])
        if problem is not None:
            found.append((int(index), paths[index], problem))
    return found


def undecodable(paths: list[Path], indices, message: str = "") -> list[tuple[int, Path, str]]:
    """``(index, path, problem)`` of the files among ``paths[indices]`` named in ``message`` (an
    error of DALI's), of a format DALI cannot decode, or failing a full PIL decode."""

    named = [(int(i), paths[i], "decoding failed in DALI") for i in indices if str(paths[i]) in message]
    if named:
        return named
    found = []
    for index in indices:
        problem = header_problem(paths[index], DALI_UNDECODABLE)
        if problem is not None:
            found.append((int(index), paths[index], problem))
            continue
        try:
            load_rgb(paths[index], int(index))
        except ImageReadError as error:
            found.append((int(index), paths[index], str(error.__cause__ or error)))
    return found


def describe(problems: list[tuple[int, Path, str]], limit: int = 5) -> str:
    """``"path (dataset index i): problem; ..."`` for the first ``limit`` problems, with the count."""
    shown = "; ".join(f"{path} (dataset index {index}): {problem}" for index, path, problem in problems[:limit])
    more = f"; and {len(problems) - limit} more" if len(problems) > limit else ""
    return f"{len(problems)} bad image file(s): {shown}{more}"
