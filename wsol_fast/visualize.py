"""Pictures of runs: the evaluation grid (test images x checkpoints, like the paper's Fig. 3,
drawn with ``drawing``'s primitives through ``localize.Localizer``) and training curves from the
JSON-lines logs.
"""
import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from . import metrics
from .data import load_rgb, resize_boxes, resize_only_transform
from .drawing import compose_grid, render_tile
from .data import load_data_split
from .inference import Localizer, box_to_original

# Log fields that are not curves (bookkeeping) and the order the curves are drawn in.
NOT_CURVES = ("run", "epoch", "lr", "images_per_s", "seconds", "skipped_images", "processes")  # bookkeeping
CURVE_ORDER = ("loss", "cls", "fg", "bg", "area", "avg", "top1")


def _grid_indices(count: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``count`` samples (all of them when n >= count)."""
    if n >= count:
        return list(range(count))
    return sorted({int(i) for i in np.linspace(0, count - 1, n).round()})


def save_eval_grid(checkpoints: Sequence[str | Path], split: str = "test", n: int = 8,
                   out_png: str | Path = "eval_grid.png", *, titles: Sequence[str] | None = None,
                   norm: str | None = None, threshold: float | None = None, map_class: str = "gt",
                   data=None, tile: int = 192, device: str = "cpu") -> Path:
    """Grid PNG of ``n`` images of ``split`` (spread evenly over it) x the ``checkpoints``: the
    first column is the image with its ground-truth boxes (green), then one column per
    checkpoint with its localization map blended on the image, its predicted box (red) and the
    ground truth (green); captions give the class and each checkpoint's top-1 class and IoU.

    Each checkpoint uses its saved normalization and threshold (``evaluate.py --sweep``) unless
    ``norm`` / ``threshold`` override them for every column; ``map_class`` is ``gt``, ``top1``,
    ``topk:K`` or ``all``. Images: the wsolevaluation transform (whole image resized) of
    ``data`` (a ``DataConfig``; default the first checkpoint's). ``titles``: one per checkpoint
    (default: run name, normalization and threshold). Returns the PNG's path.
    """
    if not checkpoints:
        raise ValueError("save_eval_grid: no checkpoint given")
    if n < 1:
        raise ValueError(f"save_eval_grid: n must be positive, got {n}")
    localizers = [Localizer(path, norm=norm, threshold=threshold, map_class=map_class, device=device)
                  for path in checkpoints]
    config = localizers[0].config if data is None else dataclasses.replace(localizers[0].config, data=data)
    samples = load_data_split(config, split)
    for localizer in localizers:
        localizer.check_classes(samples.num_classes, f"the {config.data.dataset} {split} split")
    if titles is not None and len(titles) != len(localizers):
        raise ValueError(f"save_eval_grid: {len(titles)} titles for {len(localizers)} checkpoints")
    names = samples.class_names
    size = config.data.image_size
    indices = _grid_indices(len(samples), n)
    originals = [load_rgb(samples.image_paths[i], i) for i in indices]
    labels = torch.as_tensor(samples.labels[indices])
    gt_original = [samples.boxes[i] for i in indices]
    gt_input = [torch.from_numpy(resize_boxes(samples.boxes[i], *samples.sizes[i], size)) for i in indices]
    transform = resize_only_transform(size)
    images = torch.stack([transform(image) for image in originals])

    cells = [[render_tile(image, tile, gt_boxes=boxes)] for image, boxes in zip(originals, gt_original)]
    captions = [[names[int(label)]] for label in labels]
    for localizer in localizers:
        result = localizer(images, labels)
        ious = metrics.box_iou(result.boxes, gt_input).tolist()
        top1 = result.probs.argmax(dim=1).tolist()
        for row, (image, boxes) in enumerate(zip(originals, gt_original)):
            box = box_to_original(result.boxes[row], *image.size, size)
            cells[row].append(render_tile(image, tile, result.maps[row], box, boxes))
            captions[row].append(f"IoU {ious[row]:.2f} · {names[top1[row]]}")
    column_titles = ["image + ground truth", *(titles or [loc.title for loc in localizers])]
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    compose_grid(cells, captions, column_titles).save(out_png)
    return out_png


def read_log(path: str | Path) -> list[dict]:
    """The records of a JSON-lines training log; a bad line raises ValueError naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training log not found: {path}")
    records = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{lineno}: not a JSON object ({error.msg}): {line[:80]!r}") from None
        if not isinstance(record, dict) or "epoch" not in record:
            raise ValueError(f"{path}:{lineno}: expected a JSON object with an 'epoch': {line[:80]!r}")
        records.append(record)
    if not records:
        raise ValueError(f"{path}: no records")
    return records


def training_curves(log_paths: Sequence[str | Path]) -> tuple[dict[str, dict[str, tuple[list, list]]], int]:
    """The curves in JSON-lines logs: quantity -> run -> (epochs, values), quantities in
    ``CURVE_ORDER`` first, then alphabetically (bookkeeping fields left out); and the offset
    added to the late stage's epochs (the early run's last epoch, so late continues early; 0
    when the logs hold no early run)."""
    runs: dict[str, list[dict]] = {}
    for path in log_paths:
        for record in read_log(path):
            runs.setdefault(str(record.get("run", Path(path).parent.name)), []).append(record)
    late_offset = max((r["epoch"] for r in runs.get("early", [])), default=0) if "late" in runs else 0
    names = {key for records in runs.values() for record in records for key, value in record.items()
             if key not in NOT_CURVES and isinstance(value, (int, float))}
    ordered = [n for n in CURVE_ORDER if n in names] + sorted(names - set(CURVE_ORDER))
    curves: dict[str, dict[str, tuple[list, list]]] = {}
    for name in ordered:
        for run, records in runs.items():
            offset = late_offset if run == "late" else 0
            points = sorted((r["epoch"] + offset, float(r[name])) for r in records if name in r)
            if points:
                curves.setdefault(name, {})[run] = ([p[0] for p in points], [p[1] for p in points])
    return curves, late_offset


def plot_training_curves(log_paths: Sequence[str | Path], out_png: str | Path, title: str | None = None) -> Path:
    """PNG of each loss term and the top-1 accuracy per epoch, one panel per quantity and one
    line per run (same color in every panel), from ``log.jsonl`` files (``launch/train.py``,
    ``launch/pretrain.py``). A late stage is drawn after the early stage it continues, the
    boundary dashed. Returns the PNG's path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # the only user of matplotlib
    from matplotlib.figure import Figure

    if not log_paths:
        raise ValueError("plot_training_curves: no log given")
    curves, late_offset = training_curves(log_paths)
    runs = list(dict.fromkeys(run for per_run in curves.values() for run in per_run))
    colors = {run: f"C{i}" for i, run in enumerate(runs)}
    columns = min(4, len(curves))
    rows = math.ceil(len(curves) / columns)
    figure = Figure(figsize=(4.0 * columns, 3.0 * rows + 0.6), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis, (name, per_run) in zip(axes, curves.items()):
        for run, (epochs, values) in per_run.items():
            axis.plot(epochs, values, marker="o", markersize=3, label=run, color=colors[run])
        if late_offset:
            axis.axvline(late_offset + 0.5, color="gray", linestyle="--", linewidth=1)
        axis.set_title("top-1 accuracy (%)" if name == "top1" else name)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    for axis in axes[len(curves):]:
        axis.set_visible(False)
    note = " (late stage after the dashed line)" if late_offset else ""
    figure.suptitle(title or f"training curves{note}")
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_png)
    return out_png
