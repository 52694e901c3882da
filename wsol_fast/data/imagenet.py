"""Reader for ImageNet (ILSVRC2012 CLS-LOC): ``train/<wnid>/*.JPEG`` and a flat ``val/`` folder.

Classes are the sorted wnid folder names under ``train/`` (or, without ``train/``, the wnids of
``LOC_synset_mapping.txt`` in file order); class names are the wnids.

Validation annotations come from the first of, in order:

1. the ``annotations`` argument: a folder of per-image XML files, or a ``LOC_val_solution.csv``;
2. XML files inside ``val/`` itself, then the folders ``val_xml/``, ``LOC_val_xml/``;
3. ``LOC_val_solution.csv`` (header ``ImageId,PredictionString``; the prediction string repeats
   ``wnid xmin ymin xmax ymax``).

An annotation belongs to the image with the same file stem (``ILSVRC2012_val_00000001``). A
validation image's label is the wnid of its first object; every object's box is kept. Boxes are
stored as given, ``xmin ymin xmax ymax`` in pixels: ImageNet's coordinates are inclusive pixel
indices, and the evaluation's IoU adds the "+1" (as the BAS code does), so nothing is shifted.

Train images are listed, never opened: their sizes are ``UNKNOWN_SIZE`` and their box arrays
are (0, 4) (training and the mean-map pass need neither; reading 1.28 M headers would take long).
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import listing_cache
from .cub import read_image_sizes
from .annotations import annotation_error, numbered_lines, parse_corner_box
from .records import AnnotationError, WSOLSplit, check_boxes_in_images
from .tables import BoxTable, PathTable

SPLITS = ("train", "val")
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
UNKNOWN_SIZE = -1
VAL_XML_FOLDERS = ("val", "val_xml", "LOC_val_xml")
SOLUTION_CSV = "LOC_val_solution.csv"
SYNSET_MAPPING = "LOC_synset_mapping.txt"
CSV_HEADER = "ImageId,PredictionString"
BOX_TAGS = ("xmin", "ymin", "xmax", "ymax")


def _image_files(folder: Path) -> list[Path]:
    """Image files (by suffix, any case) directly inside ``folder``, sorted by name."""
    with os.scandir(folder) as entries:
        names = [e.name for e in entries if e.is_file() and Path(e.name).suffix.lower() in IMAGE_SUFFIXES]
    return [folder / name for name in sorted(names)]


def _train_wnids(train_dir: Path) -> list[str]:
    with os.scandir(train_dir) as entries:
        wnids = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    if not wnids:
        raise FileNotFoundError(f"no class folders (train/<wnid>/) in {train_dir}")
    return wnids


def _read_synset_mapping(path: Path) -> list[str]:
    """The wnids of a ``wnid description`` file, in file order."""
    wnids: list[str] = []
    seen: set[str] = set()
    for lineno, line in numbered_lines(path):
        wnid = line.split()[0]
        if wnid in seen:
            raise annotation_error(path, lineno, f"duplicate wnid {wnid}", line)
        seen.add(wnid)
        wnids.append(wnid)
    if not wnids:
        raise AnnotationError(f"{path}: no wnids listed")
    return wnids


def _class_wnids(root: Path) -> list[str]:
    """Class order: sorted ``train/`` folders, else ``LOC_synset_mapping.txt``."""
    if (root / "train").is_dir():
        return _train_wnids(root / "train")
    if (root / SYNSET_MAPPING).is_file():
        return _read_synset_mapping(root / SYNSET_MAPPING)
    raise FileNotFoundError(
        f"cannot tell the ImageNet class order: {root} has neither train/<wnid>/ folders "
        f"nor {SYNSET_MAPPING}"
    )


def _list_train(train_dir: Path, wnids: list[str]) -> tuple[PathTable, np.ndarray]:
    """``(paths, labels)`` of ``train/<wnid>/<image>``, listed from the folders."""
    names: list[str] = []
    counts = []
    for wnid in wnids:
        files = _image_files(train_dir / wnid)
        names.extend(f"{wnid}/{path.name}" for path in files)
        counts.append(len(files))
    labels = np.repeat(np.arange(len(wnids), dtype=np.int64), counts)
    return PathTable.from_names(train_dir, names), labels


def _read_train(root: Path) -> WSOLSplit:
    """The training split, from the cached listing when the folders have not changed since."""
    train_dir = root / "train"
    wnids = _train_wnids(train_dir)
    listed = listing_cache.load(train_dir, wnids)
    if listed is None:
        listed = _list_train(train_dir, wnids)
        listing_cache.save(train_dir, wnids, *listed)
    paths, labels = listed
    if not len(paths):
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {train_dir}/<wnid>/")
    return WSOLSplit(root=root, image_paths=paths, labels=labels, boxes=BoxTable.empty(len(paths)),
                     sizes=np.full((len(paths), 2), UNKNOWN_SIZE, dtype=np.int64), class_names=wnids,
                     files_listed=True)


class _Annotation(NamedTuple):
    """One validation image: label, (K, 4) float32 boxes, ``(width, height)`` or None if unknown."""

    label: int
    boxes: np.ndarray
    size: tuple[int, int] | None


def _boxes_array(boxes: list[list[float]]) -> np.ndarray:
    return np.array(boxes, dtype=np.float32).reshape(-1, 4)


def _xml_text(parent: ElementTree.Element, tag: str, fail: Callable[[str], AnnotationError]) -> str:
    child = parent.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise fail(f"missing <{tag}> in <{parent.tag}>")
    return child.text.strip()


def _xml_size(size: ElementTree.Element, fail: Callable[[str], AnnotationError]) -> tuple[int, int]:
    texts = [_xml_text(size, tag, fail) for tag in ("width", "height")]
    try:
        width, height = (int(text) for text in texts)
    except ValueError:
        raise fail(f"<size> width/height are not integers ({' '.join(texts)!r})") from None
    if width <= 0 or height <= 0:
        raise fail(f"<size> width and height must be positive, found {width} {height}")
    return width, height


def _read_xml(path: Path, class_index: dict[str, int]) -> _Annotation:
    """Parse one per-image XML file (``<size>`` optional, one or more ``<object>``)."""
    try:
        tree = ElementTree.parse(path)
    except ElementTree.ParseError as exc:
        raise AnnotationError(f"{path}:{exc.position[0]}: XML parse error: {exc}") from None

    def fail(what: str) -> AnnotationError:
        return AnnotationError(f"{path}: {what}")

    size_element = tree.getroot().find("size")
    size = None if size_element is None else _xml_size(size_element, fail)
    objects = tree.getroot().findall("object")
    if not objects:
        raise fail("no <object> element")
    wnids, boxes = [], []
    for number, obj in enumerate(objects, start=1):

        def fail_object(what: str, number: int = number) -> AnnotationError:
            return fail(f"object {number}: {what}")

        wnid = _xml_text(obj, "name", fail_object)
        if wnid not in class_index:
            raise fail_object(f"unknown wnid {wnid!r} (not a class)")
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise fail_object("missing <bndbox> in <object>")
        wnids.append(wnid)
        boxes.append(parse_corner_box([_xml_text(bndbox, tag, fail_object) for tag in BOX_TAGS], fail_object))
    return _Annotation(class_index[wnids[0]], _boxes_array(boxes), size)


def _read_xml_folder(folder: Path, class_index: dict[str, int]) -> dict[str, tuple[_Annotation, str]]:
    """Map file stem -> (annotation, where it came from) for the ``*.xml`` files of ``folder``."""
    with os.scandir(folder) as entries:
        names = sorted(e.name for e in entries if e.is_file() and e.name.lower().endswith(".xml"))
    if not names:
        raise FileNotFoundError(f"no .xml annotation files in {folder}")
    return {Path(name).stem: (_read_xml(folder / name, class_index), str(folder / name)) for name in names}


def _read_solution_csv(path: Path, class_index: dict[str, int]) -> dict[str, tuple[_Annotation, str]]:
    """Map ImageId -> (annotation, ``"path:lineno"``) for a ``LOC_val_solution.csv`` file."""
    annotations: dict[str, tuple[_Annotation, str]] = {}
    lines = numbered_lines(path)
    first = next(lines, None)
    if first is None or first[1].strip() != CSV_HEADER:
        lineno, line = first or (1, "")
        raise annotation_error(path, lineno, f"expected the header {CSV_HEADER!r}", line)
    for lineno, line in lines:
        def fail(what: str, lineno: int = lineno, line: str = line) -> AnnotationError:
            return annotation_error(path, lineno, what, line)

        image_id, comma, prediction = line.partition(",")
        image_id = image_id.strip()
        if not comma or not image_id:
            raise fail("expected 'ImageId,PredictionString'")
        if image_id in annotations:
            raise fail(f"duplicate ImageId {image_id}")
        tokens = prediction.split()
        if not tokens or len(tokens) % 5:
            raise fail(
                f"PredictionString needs groups of 5 'wnid xmin ymin xmax ymax', found {len(tokens)} fields"
            )
        groups = [tokens[i : i + 5] for i in range(0, len(tokens), 5)]
        for wnid, *_ in groups:
            if wnid not in class_index:
                raise fail(f"unknown wnid {wnid!r} (not a class)")
        boxes = [parse_corner_box(coords, fail) for _, *coords in groups]
        annotation = _Annotation(class_index[groups[0][0]], _boxes_array(boxes), None)
        annotations[image_id] = (annotation, f"{path}:{lineno}")
    return annotations


def _annotation_source(root: Path, annotations: Path | None) -> Path:
    """The XML folder or CSV file to read, by the order of the module docstring."""
    if annotations is not None:
        if not annotations.exists():
            raise FileNotFoundError(f"ImageNet annotations not found: {annotations}")
        return annotations
    for name in VAL_XML_FOLDERS:
        folder = root / name
        if folder.is_dir() and any(p.suffix.lower() == ".xml" for p in folder.iterdir()):
            return folder
    if (root / SOLUTION_CSV).is_file():
        return root / SOLUTION_CSV
    searched = ", ".join([f"{name}/*.xml" for name in VAL_XML_FOLDERS] + [SOLUTION_CSV])
    raise FileNotFoundError(f"no ImageNet validation annotations under {root} (looked for {searched})")


def _read_val(root: Path, annotations: Path | None, skip_bad_images: bool) -> WSOLSplit:
    wnids = _class_wnids(root)
    class_index = {wnid: label for label, wnid in enumerate(wnids)}
    val_dir = root / "val"
    if not val_dir.is_dir():
        raise FileNotFoundError(f"ImageNet validation folder not found: {val_dir}")
    images: dict[str, Path] = {}
    for path in _image_files(val_dir):
        if path.stem in images:
            raise ValueError(f"two validation images share the name {path.stem}: {images[path.stem]}, {path}")
        images[path.stem] = path
    if not images:
        raise FileNotFoundError(
            f"no images directly in {val_dir} (expected the flat ILSVRC2012_val_XXXXXXXX.JPEG layout)"
        )
    source = _annotation_source(root, annotations)
    read = _read_xml_folder if source.is_dir() else _read_solution_csv
    by_stem = read(source, class_index)
    for stem, (_, where) in by_stem.items():
        if stem not in images:
            raise AnnotationError(f"{where}: annotation for {stem!r}, but no such image in {val_dir}")
    missing = [str(path) for stem, path in images.items() if stem not in by_stem]
    if missing:
        raise AnnotationError(
            f"{source}: no annotation for {len(missing)} validation image(s), e.g. {missing[:5]}"
        )
    records, paths = [by_stem[stem][0] for stem in images], list(images.values())
    sizes = [rec.size for rec in records]
    unknown = [i for i, size in enumerate(sizes) if size is None]  # no <size> in the annotation
    kept, header_sizes, skipped = read_image_sizes([paths[i] for i in unknown], skip_bad_images,
                                                   [f"annotated in {by_stem[paths[i].stem][1]}" for i in unknown])
    for k, size in zip(kept, header_sizes):
        sizes[unknown[k]] = size
    keep = [i for i, size in enumerate(sizes) if size is not None]
    check_boxes_in_images([records[i].boxes for i in keep], [sizes[i] for i in keep],
                          lambda k: by_stem[paths[keep[k]].stem][1])
    return WSOLSplit(
        root=root,
        image_paths=[paths[i] for i in keep],
        labels=np.array([records[i].label for i in keep], dtype=np.int64),
        boxes=[records[i].boxes for i in keep],
        sizes=np.array([sizes[i] for i in keep], dtype=np.int64).reshape(-1, 2),
        class_names=wnids,
        skipped=skipped,
    )


def read_imagenet(root: str | Path, split: str, annotations: str | Path | None = None,
                  skip_bad_images: bool = False) -> WSOLSplit:
    """Read the ``"train"`` or ``"val"`` split of an ILSVRC2012 CLS-LOC tree at ``root``.

    Images are in sorted file order (train: by class, then by name). Val boxes are (K >= 1, 4)
    float32 ``xmin ymin xmax ymax`` as annotated; val sizes come from the XML ``<size>`` or else
    the image header. Train sizes are ``UNKNOWN_SIZE`` and train boxes (0, 4) (see module doc).
    ``annotations`` (val only) overrides the annotation search: an XML folder or a CSV file.
    ``skip_bad_images`` (val): an image whose size must come from its unreadable header is left out
    and listed in ``skipped``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"ImageNet root directory not found: {root}")
    if split == "train":
        if annotations is not None:
            raise ValueError("annotations= applies to the 'val' split only")
        if not (root / "train").is_dir():
            raise FileNotFoundError(f"ImageNet train folder not found: {root / 'train'}")
        return _read_train(root)
    return _read_val(root, None if annotations is None else Path(annotations), skip_bad_images)
