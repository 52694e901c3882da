"""Localize objects in new images with a trained checkpoint: ``wsol-fast localize``.

Each image goes through the wsolevaluation test transform (resized whole to the checkpoint's
input size, no crop), so the network sees all of it. Per image: the top-5 classes with their
softmax probabilities, the localization map (BAS: the generator map of the top-1 class by
default; CAM checkpoints: the class activation map), normalized and cut at the checkpoint's
saved threshold (``evaluate.py --sweep``; else min-max and the per-method default), and the box
of the largest connected component, mapped back to the original image's pixels
(``x0, y0, x1, y1``, exclusive maxima; the whole image when nothing passes the threshold).

Outputs in ``--out``: ``localizations.json`` (settings, one record per image, the skipped
images), ``detections_coco.json`` (COCO layout; ``category_id`` is the 0-based class + 1,
``bbox`` is ``[x, y, w, h]``, ``score`` the top-1 probability) and ``overlays/<stem>.png`` (map
blended on the image, predicted box red, ground-truth boxes green with ``--annotations``).
Images that cannot be decoded are skipped and listed; the exit status is 0 when at least one
image was localized, 1 when none was or the input is bad, 2 for unusable arguments.
"""
import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .. import metrics
from ..argtypes import map_class
from ..config import TrainConfig
from ..data import ImageReadError, load_rgb, resize_boxes, resize_only_transform
from ..data.annotations import annotation_error, numbered_lines, parse_corner_box, read_class_names
from ..drawing import GT_COLOR, PRED_COLOR, draw_box, draw_caption, overlay_heatmap
from ..engine.evaluate import EvalSettings
from ..engine.progress import console, make_progress, print_message, print_warning, results_table
from ..errors import UsageError
from ..fields import non_negative_int, positive_int
from ..inference import UNLABELED_MAP_CLASS, Localizer, box_to_original
from .common import add_device_argument, add_localization_arguments, chosen_device, run_command

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
TOP_K = 5


@dataclass(frozen=True)
class ImageEntry:
    """An image to localize: ``path`` as found; ``key`` its path relative to the folder it was
    found in (POSIX), or its file name when given directly."""

    path: Path
    key: str


def find_images(paths) -> list[ImageEntry]:
    """Images named by ``paths``: files as given, folders searched recursively for
    ``IMAGE_EXTENSIONS`` (sorted; dangling links and link loops included, so that they are
    reported as skipped); duplicates dropped. A path that does not exist raises."""
    entries, seen = [], set()
    for argument in map(Path, paths):
        if argument.is_dir():
            found = [(p, p.relative_to(argument).as_posix()) for p in sorted(argument.rglob("*"))
                     if p.suffix.lower() in IMAGE_EXTENSIONS and (p.is_file() or p.is_symlink())]
        elif argument.is_file():
            found = [(argument, argument.name)]
        else:
            raise FileNotFoundError(f"no such image or folder: {argument}")
        for path, key in found:
            target = os.path.realpath(path)  # unlike Path.resolve, never raises on a link loop
            if target not in seen:
                seen.add(target)
                entries.append(ImageEntry(path, key))
    return entries


def overlay_names(entries: list[ImageEntry]) -> list[str]:
    """``<stem>.png`` per entry, made unique with ``-2``, ``-3``, ... in order."""
    names, used = [], set()
    for entry in entries:
        stem, name, copy = entry.path.stem, f"{entry.path.stem}.png", 1
        while name in used:
            copy += 1
            name = f"{stem}-{copy}.png"
        used.add(name)
        names.append(name)
    return names


def read_annotations(path: str | Path, entries: list[ImageEntry]) -> tuple[dict[int, list[list[float]]], int]:
    """Ground-truth boxes from ``path``, one box a line: ``image x0 y0 x1 y1`` (whitespace) or
    ``image,x0,y0,x1,y1`` (a wsolevaluation ``localization.txt``), original pixels. ``image``
    is an entry's key, or a path relative to the annotation file's folder (or absolute).
    Returns (entry index -> boxes, number of lines naming no entry); a malformed line raises
    ``AnnotationError`` naming file and line."""
    path = Path(path)
    by_key = {entry.key: i for i, entry in enumerate(entries)}
    by_path = {entry.path.resolve(): i for i, entry in enumerate(entries)}
    boxes: dict[int, list[list[float]]] = {}
    unmatched = 0
    for lineno, line in numbered_lines(path):
        def fail(what: str, lineno: int = lineno, line: str = line):
            return annotation_error(path, lineno, what, line)

        fields = line.rsplit(",", 4) if line.count(",") >= 4 else line.rsplit(None, 4)
        if len(fields) != 5:
            raise fail("expected 'image x0 y0 x1 y1' (or comma-separated)")
        name = fields[0].strip()
        box = parse_corner_box([f.strip() for f in fields[1:]], fail)
        index = by_key.get(name, by_path.get((path.parent / name).resolve()))
        if index is None:
            unmatched += 1
        else:
            boxes.setdefault(index, []).append(box)
    return boxes, unmatched


def default_class_names(config: TrainConfig, num_classes: int) -> list[str] | None:
    """The training set's ``classes.txt`` (CUB layout) when it is there and fits, else None."""
    path = Path(config.data.data_root) / "classes.txt"
    if config.data.dataset in ("cub", "synthetic") and path.is_file():
        names = read_class_names(path, numbered=True)
        return names if len(names) == num_classes else None
    return None


class ImageFiles(Dataset):
    """Decoded images as dicts: ``index``, ``image`` (3, S, S) float32 network input, ``width``,
    ``height``, ``display`` (h, w, 3) uint8 (longer side <= ``display_max_side``); an image that
    cannot be decoded gives ``index`` and ``error`` only."""

    def __init__(self, entries: list[ImageEntry], image_size: int, display_max_side: int):
        self.entries, self.display_max_side = entries, display_max_side
        self.transform = resize_only_transform(image_size)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict:
        path = self.entries[index].path
        try:
            image = load_rgb(path, index)
        except ImageReadError as error:
            return {"index": index, "error": f"cannot read image {path}: {error.__cause__ or error}"}
        width, height = image.size
        scale = min(1.0, self.display_max_side / max(width, height))
        display = image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.BILINEAR)
        return {"index": index, "image": self.transform(image), "width": width, "height": height,
                "display": np.asarray(display)}


def save_overlay(sample: dict, heat: torch.Tensor, box: list[float], gt_boxes, caption: str, path: Path) -> None:
    """The map blended on the display image, predicted box (red), ground truth (green), caption."""
    display = Image.fromarray(sample["display"])
    scale = display.size[0] / sample["width"]
    picture = overlay_heatmap(display, heat)
    for gt in gt_boxes:
        draw_box(picture, gt, GT_COLOR, scale)
    draw_box(picture, box, PRED_COLOR, scale)
    draw_caption(picture, caption)
    picture.save(path)


def image_record(entry: ImageEntry, sample: dict, probs: torch.Tensor, box: list[float], settings: EvalSettings,
                 names: list[str] | None) -> dict:
    """The JSON record of one localized image."""
    top = probs.topk(min(TOP_K, len(probs)))
    top5 = [{"class": int(c), **({"name": names[int(c)]} if names else {}), "prob": round(float(p), 6)}
            for p, c in zip(top.values, top.indices)]
    return {"path": str(entry.path), "key": entry.key, "width": sample["width"], "height": sample["height"],
            "top5": top5, "box": box, "norm": settings.norm, "threshold": settings.threshold,
            "map_class": settings.map_class}


def coco_detections(records: list[dict], num_classes: int, names: list[str] | None) -> dict:
    """COCO layout of the records: images, categories (id = class + 1), one detection each."""
    images, annotations = [], []
    for number, record in enumerate(records, start=1):
        images.append({"id": number, "file_name": record["key"], "width": record["width"],
                       "height": record["height"]})
        x0, y0, x1, y1 = record["box"]
        width, height = round(x1 - x0, 2), round(y1 - y0, 2)
        annotations.append({"id": number, "image_id": number, "category_id": record["top5"][0]["class"] + 1,
                            "bbox": [x0, y0, width, height], "area": round(width * height, 2),
                            "score": record["top5"][0]["prob"], "iscrowd": 0})
    categories = [{"id": c + 1, "name": names[c] if names else str(c)} for c in range(num_classes)]
    return {"images": images, "categories": categories, "annotations": annotations}


def localize_all(localizer: Localizer, entries: list[ImageEntry], names: list[str] | None, gt_boxes: dict,
                 out: Path, batch_size: int = 32, workers: int = 0,
                 overlay_max_side: int = 1024) -> tuple[list[dict], list[dict]]:
    """Localize every entry in batches with a progress bar, writing overlays to ``out/overlays``
    as it goes; returns (records, skipped images)."""
    overlay_dir = out / "overlays"
    overlay_dir.mkdir(parents=True, exist_ok=True)
    overlays = overlay_names(entries)
    size = localizer.config.data.image_size
    dataset = ImageFiles(entries, size, overlay_max_side)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=list)
    records, skipped, start = [], [], time.perf_counter()
    with make_progress() as progress:
        task = progress.add_task("localize", total=len(entries), info="", unit="images")
        for batch in loader:
            for sample in batch:
                if "error" in sample:
                    skipped.append({"path": str(entries[sample["index"]].path), "error": sample["error"]})
                    print_message(sample["error"], "skipped:", "yellow")
            good = [sample for sample in batch if "error" not in sample]
            if good:
                result = localizer(torch.stack([sample["image"] for sample in good]))
                for row, sample in enumerate(good):
                    index = sample["index"]
                    record = image_record(entries[index], sample, result.probs[row],
                                          box_to_original(result.boxes[row], sample["width"], sample["height"],
                                                          size),
                                          localizer.settings, names)
                    if index in gt_boxes:
                        record["gt_boxes"] = gt_boxes[index]
                        gt = resize_boxes(np.array(gt_boxes[index]), sample["width"], sample["height"], size)
                        record["iou"] = round(float(metrics.box_iou(result.boxes[row:row + 1],
                                                                    [torch.from_numpy(gt)])[0]), 4)
                    record["overlay"] = f"overlays/{overlays[index]}"
                    save_overlay(sample, result.maps[row], record["box"], gt_boxes.get(index, []),
                                 caption(record), overlay_dir / overlays[index])
                    records.append(record)
            rate = len(records) / (time.perf_counter() - start)
            progress.update(task, advance=len(batch), info=f"{rate:.1f} img/s")
    return records, skipped


def caption(record: dict) -> str:
    """``name (or class) p=0.93`` of the top-1 class, plus the IoU when known."""
    best = record["top5"][0]
    text = f"{best.get('name', best['class'])} p={best['prob']:.2f}"
    return text + (f" IoU={record['iou']:.2f}" if "iou" in record else "")


def summary_row(record: dict) -> dict:
    best = record["top5"][0]
    return {"image": record["key"], "class": best.get("name", best["class"]), "prob": best["prob"],
            "box": " ".join(f"{v:g}" for v in record["box"])}


def write_outputs(out: Path, localizer: Localizer, records: list[dict], skipped: list[dict], names) -> None:
    """``localizations.json`` and ``detections_coco.json`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    settings = {"checkpoint": str(localizer.checkpoint), "method": localizer.settings.method,
                "norm": localizer.settings.norm, "threshold": localizer.settings.threshold,
                "map_class": localizer.settings.map_class, "image_size": localizer.config.data.image_size,
                "transform": "wsolevaluation (resize to image_size x image_size, no crop)",
                "box_format": "x0 y0 x1 y1, original pixels, exclusive maxima"}
    (out / "localizations.json").write_text(json.dumps(
        {"settings": settings, "images": records, "skipped": skipped}, indent=2))
    (out / "detections_coco.json").write_text(json.dumps(
        coco_detections(records, localizer.num_classes, names), indent=2))


def localize_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsol-fast localize",
        description="Classify and localize objects in images with a trained checkpoint; writes "
                    "localizations.json, detections_coco.json and overlay PNGs to --out.")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", required=True, help="output folder")
    add_localization_arguments(parser)
    parser.add_argument("--map-class", type=map_class, default=UNLABELED_MAP_CLASS,
                        help="map of: top1 | topk:K (mean) | all (mean)")
    parser.add_argument("--annotations", help="ground-truth boxes to draw: lines 'image x0 y0 x1 y1' or "
                                              "'image,x0,y0,x1,y1' (image: path relative to a PATH folder, or "
                                              "to this file's folder), original pixels")
    parser.add_argument("--class-names", help="class names, one a line (default: the training set's classes.txt)")
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--workers", type=non_negative_int, default=2, help="image decoding processes (0: in this one)")
    parser.add_argument("--overlay-max-side", type=positive_int, default=1024,
                        help="overlay PNGs keep the image's size up to this longer side")
    add_device_argument(parser, "the model")
    return parser


def localize_main(argv: list[str] | None = None) -> int:
    """``wsol-fast localize``; returns the exit status (see the module docstring)."""
    return run_command(_localize, localize_parser().parse_args(argv))


def _localize(args: argparse.Namespace) -> int:
    if args.map_class == "gt":
        raise UsageError("--map-class gt needs labels; use top1, topk:K or all")
    entries = find_images(args.paths)
    if not entries:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) under {', '.join(args.paths)}")
    localizer = Localizer(args.checkpoint, args.norm, args.threshold, args.map_class, chosen_device(args.device))
    names = read_class_names(Path(args.class_names)) if args.class_names else None
    if names is not None:
        localizer.check_classes(len(names), f"--class-names {args.class_names}")
    names = names or default_class_names(localizer.config, localizer.num_classes)
    gt_boxes, unmatched = read_annotations(args.annotations, entries) if args.annotations else ({}, 0)
    if unmatched:
        print_warning(f"{unmatched} annotation line(s) name no image given; ignored")
    records, skipped = localize_all(localizer, entries, names, gt_boxes, Path(args.out), args.batch_size,
                                    args.workers, args.overlay_max_side)
    write_outputs(Path(args.out), localizer, records, skipped, names)
    console.print(results_table(f"{len(records)} image(s) localized, {len(skipped)} skipped",
                                [summary_row(r) for r in records[:20]], ["image", "class", "prob", "box"]))
    console.print(f"wrote {Path(args.out) / 'localizations.json'}, detections_coco.json and overlays/")
    if not records:
        raise ValueError("no image could be localized")
    return 0
