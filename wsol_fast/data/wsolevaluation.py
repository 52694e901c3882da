"""Reader for the wsolevaluation metadata format (one folder per split, paths relative to an image root).

Files in the metadata folder, one record a line, blank lines ignored:

- ``image_ids.txt``: ``path`` (required; sets the image order);
- ``class_labels.txt``: ``path,label`` with 0-based integer labels (required);
- ``image_sizes.txt``: ``path,width,height`` (optional);
- ``localization.txt``: ``path,x0,y0,x1,y1``, one line per box (optional); on OpenImages
  ``path,mask_path,ignore_path``, one line per instance mask, paths relative to a mask root, the
  ignore path empty on all but (usually) the image's first line (``masks`` module).

Fields are split at the last commas, so a path may itself hold commas. Boxes are kept as given
(inclusive pixel indices on ImageNet, like the XML they come from). Without
``localization.txt`` the split has (0, 4) boxes (a training split); sizes then come from
``image_sizes.txt`` or are ``UNKNOWN_SIZE``. With boxes but no ``image_sizes.txt`` the sizes are
read from the image headers. A mask split has (0, 4) boxes and its masks as ``MaskFiles``, read
when evaluated. Malformed lines, and mask files that are missing, raise ``AnnotationError``
naming file and line.

The benchmark (clovaai/wsolevaluation) keeps one metadata folder per dataset with a folder per
split: ``metadata/<CUB|ILSVRC|OpenImages>/<train|val|test>/`` (``read_wsolevaluation_split``).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..config import MASK_DATASETS, WSOLEVALUATION_PRESETS
from .cub import read_image_size
from .annotations import (Fail, Listing, annotation_error, numbered_lines, parse_corner_box, read_class_names,
                          read_per_image)
from .imagenet import UNKNOWN_SIZE
from .masks import MaskFiles
from .records import AnnotationError, WSOLSplit

WSOLEVALUATION_SPLITS = ("train", "val", "test")


def _read_image_ids(path: Path) -> dict[str, int]:
    """Map relative image path -> line number, in file order."""
    image_ids: dict[str, int] = {}
    for lineno, line in numbered_lines(path):
        image_id = line.strip()
        if image_id in image_ids:
            first = image_ids[image_id]
            raise annotation_error(path, lineno, f"duplicate image path (first on line {first})", line)
        image_ids[image_id] = lineno
    if not image_ids:
        raise AnnotationError(f"{path}: no images listed")
    return image_ids


def _label_parser(class_source: str | Path | None, num_classes: int | None) -> Callable[[list[str], Fail], int]:
    """Parse a 0-based label, below ``num_classes`` when ``class_source`` (a class-name file, or
    what else gave the count) gives that count."""

    def parse(values: list[str], fail: Fail) -> int:
        try:
            label = int(values[0])
        except ValueError:
            raise fail(f"label is not an integer ({values[0]!r})") from None
        if label < 0:
            raise fail(f"label must be >= 0, found {label}")
        if num_classes is not None and label >= num_classes:
            raise fail(f"label {label} is not below the {num_classes} classes of {class_source}")
        return label

    return parse


def _parse_size(values: list[str], fail: Fail) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in values)
    except ValueError:
        raise fail(f"width and height are not integers ({','.join(values)!r})") from None
    if width <= 0 or height <= 0:
        raise fail(f"width and height must be positive, found {width} {height}")
    return width, height


def _mask_parser(mask_root: Path) -> Callable[[list[str], Fail], tuple[Path, Path | None]]:
    """Parse ``mask_path,ignore_path`` (ignore may be empty) into paths under ``mask_root``
    that must exist."""

    def parse(values: list[str], fail: Fail) -> tuple[Path, Path | None]:
        mask, ignore = values
        if not mask:
            raise fail("empty mask path")
        paths = [mask_root / mask, mask_root / ignore if ignore else None]
        for path in paths:
            if path is not None and not path.is_file():
                raise fail(f"mask file not found: {path}")
        return paths[0], paths[1]

    return parse


def _read_masks(path: Path, listing: Listing, mask_root: Path) -> list[MaskFiles]:
    """The ``MaskFiles`` of every image of ``listing`` from the mask ``localization.txt`` at ``path``."""
    table = read_per_image(path, listing, 2, _mask_parser(mask_root), several_per_image=True, with_lines=True)
    masks = []
    for image_id in listing.keys:
        rows = table[image_id]
        masks.append(MaskFiles(masks=tuple(mask for _, (mask, _) in rows),
                               ignores=tuple(ignore for _, (_, ignore) in rows if ignore is not None),
                               where=f"{path}:{rows[0][0]}"))
    return masks


def read_wsolevaluation(
    metadata_dir: str | Path, image_root: str | Path, class_names_file: str | Path | None = None,
    num_classes: int | None = None, masks: bool = False, mask_root: str | Path | None = None,
) -> WSOLSplit:
    """Read one wsolevaluation metadata folder; image ``p`` of ``image_ids.txt`` is ``image_root / p``.

    Class names are the lines of ``class_names_file``, else ``str(c)`` for c below
    ``num_classes`` (labels must be), else for labels 0..max.
    Boxes: N arrays (K, 4) float32 ``x0 y0 x1 y1`` (K >= 1 with ``localization.txt``, else 0);
    sizes (N, 2) int64 ``width, height`` (see the module docstring when files are absent).
    ``masks``: ``localization.txt``, when there, lists masks under ``mask_root`` (default
    ``image_root``): the split's ``masks`` are ``MaskFiles`` and its boxes (0, 4).
    """
    metadata_dir = Path(metadata_dir)
    image_root = Path(image_root).resolve()
    if not metadata_dir.is_dir():
        raise FileNotFoundError(f"wsolevaluation metadata folder not found: {metadata_dir}")
    if not image_root.is_dir():
        raise FileNotFoundError(f"image root directory not found: {image_root}")
    ids_path = metadata_dir / "image_ids.txt"
    image_ids = _read_image_ids(ids_path)
    listing = Listing(image_ids, "image_ids.txt", "image path", comma_separated=True)
    image_paths = []
    for image_id, lineno in image_ids.items():
        path = image_root / image_id
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path} ({ids_path}:{lineno})")
        image_paths.append(path)

    if class_names_file is None and num_classes is not None:
        class_names = [str(c) for c in range(num_classes)]
        parse_label = _label_parser(f"num_classes={num_classes}", num_classes)
        labels = read_per_image(metadata_dir / "class_labels.txt", listing, 1, parse_label)
    elif class_names_file is None:
        labels = read_per_image(metadata_dir / "class_labels.txt", listing, 1, _label_parser(None, None))
        class_names = [str(c) for c in range(max(label for (label,) in labels.values()) + 1)]
    else:
        class_names_file = Path(class_names_file)
        class_names = read_class_names(class_names_file, numbered=False)
        parse_label = _label_parser(class_names_file, len(class_names))
        labels = read_per_image(metadata_dir / "class_labels.txt", listing, 1, parse_label)

    boxes_path, sizes_path = metadata_dir / "localization.txt", metadata_dir / "image_sizes.txt"
    split_masks = None
    if masks and boxes_path.is_file():
        mask_root = image_root if mask_root is None else Path(mask_root).resolve()
        split_masks = _read_masks(boxes_path, listing, mask_root)
        boxes = [np.zeros((0, 4), dtype=np.float32)] * len(image_ids)
    elif boxes_path.is_file():
        table = read_per_image(boxes_path, listing, 4, parse_corner_box, several_per_image=True)
        boxes = [np.array(table[image_id], dtype=np.float32) for image_id in image_ids]
    else:
        boxes = [np.zeros((0, 4), dtype=np.float32)] * len(image_ids)
    if sizes_path.is_file():
        sizes_table = read_per_image(sizes_path, listing, 2, _parse_size)
        sizes = [sizes_table[image_id][0] for image_id in image_ids]
    elif boxes_path.is_file() and not masks:  # a mask split needs no sizes: masks are resized whole
        sizes = [read_image_size(path) for path in image_paths]
    else:
        sizes = [(UNKNOWN_SIZE, UNKNOWN_SIZE)] * len(image_ids)
    return WSOLSplit(
        root=image_root,
        image_paths=image_paths,
        labels=np.array([labels[image_id][0] for image_id in image_ids], dtype=np.int64),
        boxes=boxes,
        sizes=np.array(sizes, dtype=np.int64).reshape(-1, 2),
        class_names=class_names,
        masks=split_masks,
    )


def read_wsolevaluation_split(
    metadata_root: str | Path, split: str, image_root: str | Path, dataset: str,
    mask_root: str | Path | None = None, num_classes: int | None = None,
) -> WSOLSplit:
    """The ``split`` (train, val or test) of the benchmark's metadata folder ``metadata_root``
    of ``dataset`` (CUB, ILSVRC or OpenImages: masks under ``mask_root``, default ``image_root``)
    over the images of ``image_root``; ``num_classes``: see ``read_wsolevaluation``."""
    if split not in WSOLEVALUATION_SPLITS:
        raise ValueError(f"split must be one of {WSOLEVALUATION_SPLITS}, got {split!r}")
    if dataset not in WSOLEVALUATION_PRESETS:
        raise ValueError(f"unknown wsolevaluation dataset {dataset!r}; choose one of {tuple(WSOLEVALUATION_PRESETS)}")
    metadata_root = Path(metadata_root)
    folder = metadata_root / split
    if not folder.is_dir():
        hint = (f"; {metadata_root} holds image_ids.txt itself: point --metadata-root at the folder above it"
                if (metadata_root / "image_ids.txt").is_file() else "")
        raise FileNotFoundError(f"wsolevaluation split folder not found: {folder} (split {split!r} of "
                                f"{dataset} metadata {metadata_root}){hint}")
    if split != "train" and not (folder / "localization.txt").is_file():
        raise FileNotFoundError(f"{folder / 'localization.txt'} not found: the {split} split is evaluated and needs "
                                "its boxes (or OpenImages masks)")
    return read_wsolevaluation(folder, image_root, num_classes=num_classes, masks=dataset in MASK_DATASETS,
                               mask_root=mask_root)
