"""Pictures of what the model sees: heat-map overlays with boxes, the evaluation grid (test
images x checkpoints, like the paper's Fig. 3) and training curves from the JSON-lines logs.

Colors: predicted boxes red, ground-truth boxes green. Boxes are ``x0, y0, x1, y1`` with
exclusive maxima (the convention of ``wsol_fast.ops``).
"""
import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from . import metrics
from .data import load_rgb, resize_boxes, resize_only_transform
from .engine.run import load_data_split

PRED_COLOR = (230, 30, 30)
GT_COLOR = (30, 200, 60)
BACKGROUND = (255, 255, 255)
TEXT_COLOR = (20, 20, 20)
# Log fields that are not curves (bookkeeping) and the order the curves are drawn in.
NOT_CURVES = ("run", "epoch", "lr", "images_per_s", "seconds", "skipped_images", "processes")  # bookkeeping
CURVE_ORDER = ("loss", "cls", "fg", "bg", "area", "avg", "top1")


def _jet_lut() -> np.ndarray:
    """(256, 3) uint8 jet colormap: blue (0) -> cyan -> yellow -> red (1)."""
    x = np.linspace(0.0, 1.0, 256)
    channels = [np.clip(1.5 - np.abs(4.0 * x - centre), 0.0, 1.0) for centre in (3.0, 2.0, 1.0)]
    return np.round(np.stack(channels, axis=1) * 255).astype(np.uint8)


JET = _jet_lut()


def colorize(values: np.ndarray) -> np.ndarray:
    """Jet colors of ``values`` (...,) float, clipped to [0, 1] -> (..., 3) uint8."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0)
    return JET[np.round(np.clip(values, 0.0, 1.0) * 255).astype(np.intp)]


def overlay_heatmap(image: Image.Image, heat, alpha: float = 0.5) -> Image.Image:
    """``image`` blended with the jet colors of ``heat`` ((h, w) float in [0, 1], numpy or torch),
    resized bilinearly to the image; ``alpha`` is the heat map's weight. Returns a new RGB image."""
    if isinstance(heat, torch.Tensor):
        heat = heat.detach().float().cpu().numpy()
    heat = np.asarray(heat, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"heat map: expected (h, w), got shape {heat.shape}")
    resized = np.asarray(Image.fromarray(heat).resize(image.size, Image.BILINEAR))
    colors = Image.fromarray(colorize(resized))
    return Image.blend(image.convert("RGB"), colors, alpha)


def font(size: float) -> ImageFont.ImageFont:
    """Pillow's built-in font at ``size`` pixels (at least 8)."""
    return ImageFont.load_default(size=max(8, int(size)))


def draw_box(image: Image.Image, box, color, scale: float = 1.0, offset=(0, 0), width: int | None = None) -> None:
    """Draw ``box`` (x0, y0, x1, y1, exclusive maxima) scaled by ``scale`` then shifted by
    ``offset`` on ``image`` in place; line width defaults to ~1/150 of the image's longer side."""
    x0, y0, x1, y1 = (float(v) * scale for v in box)
    dx, dy = offset
    width = width or max(2, round(max(image.size) / 150))
    right, bottom = max(x0, x1 - 1), max(y0, y1 - 1)
    ImageDraw.Draw(image).rectangle([x0 + dx, y0 + dy, right + dx, bottom + dy], outline=color, width=width)


def draw_caption(image: Image.Image, text: str) -> None:
    """Write ``text`` in the top-left corner of ``image`` (in place), white on a dark band, in a
    font sized to the image (cut with an ellipsis where it is still too long)."""
    draw = ImageDraw.Draw(image)
    caption_font = font(max(8, round(max(image.size) / 32)))
    text = fitted_text(draw, text, image.size[0] - 8, caption_font)
    _, _, right, bottom = draw.textbbox((4, 2), text, font=caption_font)
    draw.rectangle([0, 0, right + 4, bottom + 3], fill=(0, 0, 0))
    draw.text((4, 2), text, fill=(255, 255, 255), font=caption_font)


def fitted_text(draw: ImageDraw.ImageDraw, text: str, width: int, text_font) -> str:
    """``text`` cut (with an ellipsis) to fit ``width`` pixels."""
    if draw.textlength(text, font=text_font) <= width:
        return text
    while text and draw.textlength(text + "…", font=text_font) > width:
        text = text[:-1]
    return text + "…"


def letterbox_scale(width: int, height: int, tile: int) -> tuple[float, tuple[int, int], tuple[int, int]]:
    """Scale, content size and offset that fit a (width, height) image centred in a tile x tile square."""
    scale = tile / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return scale, size, ((tile - size[0]) // 2, (tile - size[1]) // 2)


def render_tile(image: Image.Image, tile: int, heat=None, pred_box=None, gt_boxes=()) -> Image.Image:
    """One grid cell: ``image`` letterboxed in a tile x tile square (white margins), optionally
    with ``heat`` blended on it, ``pred_box`` (red) and ``gt_boxes`` (green), all in the
    original image's pixels."""
    scale, size, offset = letterbox_scale(*image.size, tile)
    content = image.convert("RGB").resize(size, Image.BILINEAR)
    if heat is not None:
        content = overlay_heatmap(content, heat)
    canvas = Image.new("RGB", (tile, tile), BACKGROUND)
    canvas.paste(content, offset)
    for box in gt_boxes:
        draw_box(canvas, box, GT_COLOR, scale, offset)
    if pred_box is not None:
        draw_box(canvas, pred_box, PRED_COLOR, scale, offset)
    return canvas


def compose_grid(cells: list[list[Image.Image]], captions: list[list[str]], titles: list[str]) -> Image.Image:
    """Rows of equal square tiles with a caption under each and a title over each column."""
    tile = cells[0][0].size[0]
    gap, title_height, caption_height = 6, max(18, tile // 8), max(14, tile // 10)
    title_font, caption_font = font(title_height * 0.7), font(caption_height * 0.75)
    columns = len(titles)
    row_height = tile + caption_height + gap
    grid = Image.new("RGB", (columns * (tile + gap) + gap, title_height + gap + len(cells) * row_height), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    for column, title in enumerate(titles):
        x = gap + column * (tile + gap)
        draw.text((x, 2), fitted_text(draw, title, tile, title_font), fill=TEXT_COLOR, font=title_font)
    for row, (row_cells, row_captions) in enumerate(zip(cells, captions)):
        y = title_height + gap + row * row_height
        for column, (cell, caption) in enumerate(zip(row_cells, row_captions)):
            x = gap + column * (tile + gap)
            grid.paste(cell, (x, y))
            draw.text((x, y + tile + 1), fitted_text(draw, caption, tile, caption_font), fill=TEXT_COLOR,
                      font=caption_font)
    return grid


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
    from .localize import Localizer, box_to_original  # localize draws with this module: import on use

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
