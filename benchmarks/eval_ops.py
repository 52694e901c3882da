"""Evaluation-op micro-benchmark: percentile-max normalization + boxes at 100 and 1,000
thresholds on random 224x224 maps, in maps/s, by both box rules.

Paths: the PyTorch reference of the component rule (``wsol_fast.ops.eval_reference``), an
OpenCV per-threshold loop as in wsolevaluation (uint8 map, cv2.threshold, cv2.findContours,
largest contour by area, cv2.boundingRect; numpy percentile normalization), the C++ extension
on one thread and on all cores with the component rule (largest 8-connected component; also
with the all-component IoU pass of MaxBoxAccV2) and with the contour rule (wsolevaluation's,
exactly: its boxes must equal the OpenCV loop's, column "same boxes"; also with the
all-contour IoU pass), and CUDA when present. Ratios are against the OpenCV loop measured in
the same run, per kind of map: "smooth" (blurred 28x28 noise, bilinearly resized: a few
blobs), "textured" (unblurred 28x28 noise: many blobs and long contours, which cost OpenCV
more) and, with ``--checkpoint``, "model": a trained model's foreground maps of its test split
(ground-truth class, resized like evaluation resizes them). Prints a table and writes JSON
(``--out``). "same boxes": component-rule rows against the PyTorch reference, contour-rule
rows against the OpenCV loop.

A second table times the whole per-image MaxBoxAcc accumulation: wsolevaluation's
``BoxEvaluator.accumulate`` as written there (the map's peak recomputed at every threshold,
boxes clipped to W - 1, a list of arrays concatenated, IoU against the ground truth, counts at
δ = 0.3/0.5/0.7), reimplemented here, against this project's path for the same job
(``metrics.threshold_sweep_ious`` + ``MaxBoxAccCounts.update``, which also does MaxBoxAccV2)
with either box rule; "same counts" says whether the contour rule's counts equal
wsolevaluation's (the component rule's differ slightly by design: it thresholds the float map).

    python benchmarks/eval_ops.py --out runs/bench/eval_ops.json
    python benchmarks/eval_ops.py --checkpoint runs/demo/late/checkpoint.pt --kinds model
"""
import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.table import Table

from wsol_fast.config import TrainConfig
from wsol_fast.data import WSOLDataset, collate, load_data_split
from wsol_fast.engine.evaluate import localization_maps
from wsol_fast.engine.progress import console, print_message
from wsol_fast.models.restore import model_from_checkpoint
from wsol_fast.metrics import BOX_RULES, MaxBoxAccCounts, threshold_sweep_ious
from wsol_fast.ops import ext
from wsol_fast.ops.checks import PERCENTILE

try:
    from wsol_fast.ops import eval_reference
except ImportError:
    eval_reference = None
try:
    import cv2
except ImportError:
    cv2 = None


MAP_KINDS = ("smooth", "textured")


def random_maps(kind: str, count: int, size: int, seed: int) -> torch.Tensor:
    """Foreground-map-like (count, size, size) float32 in [0, 1]: 28x28 noise (blurred for
    "smooth"), bilinearly resized to size x size as evaluation resizes the generator's maps."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(count, 1, 28, 28, generator=generator)
    if kind == "smooth":
        kernel = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
        kernel = (kernel[:, None] * kernel[None, :] / 256.0).view(1, 1, 5, 5)
        noise = F.conv2d(F.pad(noise, (2, 2, 2, 2), mode="replicate"), kernel)
    return F.interpolate(noise, size=(size, size), mode="bilinear", align_corners=False).squeeze(1)


def model_maps(checkpoint: Path, count: int, size: int) -> torch.Tensor:
    """(count, size, size) float32: the localization maps (ground-truth class) that
    ``checkpoint``'s model gives the first images of its test split resized to size x size
    (repeated up to ``count`` maps if the split is smaller)."""
    model, state = model_from_checkpoint(checkpoint)
    cfg = TrainConfig.from_dict(state["config"])
    dataset = WSOLDataset(load_data_split(cfg, "test"), train=False, image_size=size, resize=size,
                          eval_protocol="wsolevaluation")
    images, labels, _ = collate([dataset[i] for i in range(min(count, len(dataset)))])
    with torch.no_grad():
        _, maps = localization_maps(model.eval(), images, labels, cfg.loss.method)
    return maps.repeat(-(-count // len(maps)), 1, 1)[:count].contiguous()


def opencv_boxes(scoremap: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """wsolevaluation's compute_bboxes_from_scoremaps (largest contour) for one map."""
    image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
    peak = np.max(image)
    boxes = np.zeros((len(levels), 4), dtype=np.int64)
    for j, level in enumerate(levels):
        _, mask = cv2.threshold(image, int(level * peak), 255, cv2.THRESH_BINARY)
        contours = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
        if contours:
            x, y, w, h = cv2.boundingRect(max(contours, key=cv2.contourArea))
            boxes[j] = (x, y, min(x + w, scoremap.shape[1] - 1), min(y + h, scoremap.shape[0] - 1))
    return boxes


def opencv_path(maps: torch.Tensor, levels: list[float], p: float) -> np.ndarray:
    levels_array = np.asarray(levels)
    out = []
    for scoremap in maps.numpy():
        normalized = np.clip(scoremap / np.percentile(scoremap, p), 0, 1).astype(np.float32)
        out.append(opencv_boxes(normalized, levels_array))
    return np.stack(out)


def wsolevaluation_accumulate(scoremap: np.ndarray, levels: np.ndarray, gt: np.ndarray,
                              num_correct: np.ndarray) -> None:
    """One image of wsolevaluation's BoxEvaluator.accumulate (largest contour), counting into
    num_correct (3, T) the thresholds whose box has IoU >= 0.3 / 0.5 / 0.7 with a GT box."""
    height, width = scoremap.shape
    image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
    boxes_per_level = []
    for level in levels:
        _, mask = cv2.threshold(image, int(level * np.max(image)), 255, cv2.THRESH_BINARY)
        contours = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
        if not contours:
            boxes_per_level.append(np.asarray([[0, 0, 0, 0]]))
            continue
        x, y, w, h = cv2.boundingRect(max(contours, key=cv2.contourArea))
        boxes_per_level.append(np.asarray([[x, y, min(x + w, width - 1), min(y + h, height - 1)]]))
    boxes = np.concatenate(boxes_per_level, axis=0)
    x0 = np.maximum(boxes[:, None, 0], gt[None, :, 0])
    y0 = np.maximum(boxes[:, None, 1], gt[None, :, 1])
    x1 = np.minimum(boxes[:, None, 2], gt[None, :, 2])
    y1 = np.minimum(boxes[:, None, 3], gt[None, :, 3])
    inter = np.maximum(0, x1 - x0 + 1) * np.maximum(0, y1 - y0 + 1)
    area_box = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    area_gt = (gt[:, 2] - gt[:, 0] + 1) * (gt[:, 3] - gt[:, 1] + 1)
    iou = (inter / (area_box[:, None] + area_gt[None, :] - inter)).max(axis=1)
    best = [max(iou[i:i + 1]) for i in range(len(levels))]  # one box per threshold
    for row, delta in enumerate((0.3, 0.5, 0.7)):
        num_correct[row][np.where(np.asarray(best) >= delta)[0]] += 1


def wsolevaluation_path(maps, levels, p, gt):
    levels_array = np.asarray(levels)
    num_correct = np.zeros((3, len(levels)))
    for scoremap in maps.numpy():
        normalized = np.clip(scoremap / np.percentile(scoremap, p), 0, 1).astype(np.float32)
        wsolevaluation_accumulate(normalized, levels_array, gt, num_correct)
    return num_correct


def project_accumulate_path(box_rule: str):
    def run(maps, levels, p, gt):
        counts = MaxBoxAccCounts(levels)
        normalized = ext.percentile_max_normalize(maps, p)
        counts.update(*threshold_sweep_ious(normalized, torch.as_tensor(gt).expand(maps.shape[0], -1, -1), levels,
                                            box_rule=box_rule))
        return counts.state["largest"].T.numpy()
    return run


def reference_path(maps, levels, p):
    return eval_reference.largest_component_boxes(eval_reference.percentile_max_normalize(maps, p), levels)


def extension_path(maps, levels, p):
    return ext.largest_component_boxes(ext.percentile_max_normalize(maps, p), levels)


def extension_iou_path(truth):
    def run(maps, levels, p):
        normalized = ext.percentile_max_normalize(maps, p)
        return ext.largest_component_boxes_and_best_iou(normalized, levels, truth[: maps.shape[0]])[0]
    return run


def contour_path(maps, levels, p):
    return ext.contour_sweep(ext.percentile_max_normalize(maps, p), levels)[0]


def contour_iou_path(truth):
    def run(maps, levels, p):
        return ext.contour_sweep(ext.percentile_max_normalize(maps, p), levels, truth[: maps.shape[0]])[0]
    return run


def measure(run, maps, levels, p, min_seconds, synchronize=lambda: None):
    """-> (maps/s, output of the first call). Repeats the whole batch until min_seconds."""
    run(maps[:1], levels, p)  # warm-up (allocations, CUDA context, caches)
    synchronize()
    done, start = 0, time.perf_counter()
    output = None
    while True:
        result = run(maps, levels, p)
        synchronize()
        output = result if output is None else output
        done += maps.shape[0]
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed, output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=224, help="map side (default 224)")
    parser.add_argument("--maps", type=int, default=64, help="maps per batch for the extension")
    parser.add_argument("--slow-maps", type=int, default=4, help="maps for reference and OpenCV")
    parser.add_argument("--thresholds", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--kinds", nargs="+", choices=(*MAP_KINDS, "model"), default=None,
                        help="kinds of maps (default: smooth, textured, and model with --checkpoint)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a trained model whose test-split foreground maps form the kind 'model'")
    parser.add_argument("--percentile", type=float, default=PERCENTILE)
    parser.add_argument("--min-seconds", type=float, default=1.0, help="timing per row")
    parser.add_argument("--out", type=Path, default=None, help="JSON output path")
    args = parser.parse_args()
    if not ext.available():
        raise SystemExit("wsol_fast._C is not built: run `pip install --no-build-isolation -e .`")
    kinds = args.kinds or [*MAP_KINDS, *(["model"] if args.checkpoint else [])]
    if "model" in kinds and args.checkpoint is None:
        parser.error("--kinds model needs --checkpoint")
    maps_of = {kind: model_maps(args.checkpoint, args.maps, args.size) if kind == "model"
               else random_maps(kind, args.maps, args.size, seed=0) for kind in kinds}

    cores = os.cpu_count() or 1
    truth = torch.tensor([[[40.0, 50.0, 180.0, 170.0]]], dtype=torch.float64).expand(args.maps, 1, 4)
    notes = []
    if cv2 is None:
        notes.append("OpenCV rows skipped: opencv-python-headless is not installed")
    if eval_reference is None:
        notes.append("reference rows skipped: wsol_fast.ops.eval_reference is not importable")
    cuda = torch.cuda.is_available() and ext.has_cuda()
    if not cuda:
        notes.append("CUDA rows skipped: no GPU or no CUDA build of wsol_fast._C")

    rows = []
    for kind, count in [(kind, count) for kind in kinds for count in args.thresholds]:
        maps = maps_of[kind]
        slow = maps[: args.slow_maps]
        levels = (np.arange(count) / count).tolist()
        base_rate = None
        expected = {}  # boxes each rule's rows must equal: the reference's, the OpenCV loop's
        cases = []
        if cv2 is not None:
            cv2.setNumThreads(1)
            cases.append(("OpenCV loop (wsolevaluation)", 1, opencv_path, slow, None))
        if eval_reference is not None:
            cases.append(("PyTorch reference", cores, reference_path, slow, None))
        cases += [("extension", 1, extension_path, maps, None),
                  ("extension", cores, extension_path, maps, None),
                  ("extension + all-component IoU", 1, extension_iou_path(truth), maps, None),
                  ("extension, contour rule", 1, contour_path, maps, None),
                  ("extension, contour rule", cores, contour_path, maps, None),
                  ("extension, contour rule + all-contour IoU", 1, contour_iou_path(truth), maps, None)]
        if cuda:
            cases.append(("extension CUDA", "GPU", extension_path, maps.cuda(), torch.cuda.synchronize))
        for name, threads, run, inputs, synchronize in cases:
            torch.set_num_threads(threads if isinstance(threads, int) else cores)
            rate, output = measure(run, inputs, levels, args.percentile, args.min_seconds,
                                   synchronize or (lambda: None))
            output = torch.as_tensor(output).cpu()
            if name == "OpenCV loop (wsolevaluation)":
                base_rate = rate
                expected["contour"] = output
            if name == "PyTorch reference":
                expected["component"] = output
            rule = "contour" if "contour rule" in name else "component"
            same = None
            if name.startswith("extension") and rule in expected:
                same = bool(torch.equal(output[: expected[rule].shape[0]], expected[rule]))
            rows.append({"maps_kind": kind, "path": name, "threads": threads, "thresholds": count,
                         "maps": int(inputs.shape[0]), "maps_per_s": rate,
                         "ms_per_map": 1e3 / rate,
                         "vs_opencv": rate / base_rate if base_rate else None,
                         "boxes_equal_reference": same})
        torch.set_num_threads(cores)

    accumulate_rows = []
    if cv2 is not None:
        gt = np.array([[40, 50, 180, 170]])
        for kind, count in [(kind, count) for kind in kinds for count in args.thresholds]:
            maps = maps_of[kind]
            levels = (np.arange(count) / count).tolist()
            torch.set_num_threads(1)
            base, counts = measure(lambda m, lv, p: wsolevaluation_path(m, lv, p, gt),
                                   maps[: args.slow_maps], levels, args.percentile, args.min_seconds)
            row = {"maps_kind": kind, "thresholds": count, "threads": 1, "wsolevaluation_ms_per_map": 1e3 / base}
            for rule in BOX_RULES:
                ours, ours_counts = measure(lambda m, lv, p: project_accumulate_path(rule)(m, lv, p, gt),
                                            maps, levels, args.percentile, args.min_seconds)
                row[f"{rule}_ms_per_map"] = 1e3 / ours
                row[f"{rule}_vs_wsolevaluation"] = ours / base
            _, contour_counts = measure(lambda m, lv, p: project_accumulate_path("contour")(m, lv, p, gt),
                                        maps[: args.slow_maps], levels, args.percentile, 0)
            row["contour_counts_equal"] = bool(np.array_equal(contour_counts, counts))
            torch.set_num_threads(cores)
            accumulate_rows.append(row)

    table = Table(title=f"Percentile-max normalization (p={args.percentile:g}) + boxes, "
                        f"{args.size}x{args.size} maps")
    for column in ("maps", "thresholds", "path", "threads", "maps/s", "ms/map", "x OpenCV",
                   "same boxes"):
        table.add_column(column, justify="left" if column in ("maps", "path") else "right",
                         no_wrap=column == "path")
    for row in rows:
        ratio = f"{row['vs_opencv']:.1f}" if row["vs_opencv"] else "-"
        same = {None: "-", True: "yes", False: "NO"}[row["boxes_equal_reference"]]
        table.add_row(row["maps_kind"], str(row["thresholds"]), row["path"], str(row["threads"]),
                      f"{row['maps_per_s']:.1f}", f"{row['ms_per_map']:.3f}", ratio, same)
    console.print(table)
    if accumulate_rows:
        table = Table(title="Per-image MaxBoxAcc accumulation (percentile-max normalization, boxes, IoU, "
                            "counts), one thread")
        for column in ("maps", "thresholds", "wsolevaluation ms/map", "component ms/map", "x wsolevaluation",
                       "contour ms/map", "x wsolevaluation", "same counts"):
            table.add_column(column, justify="left" if column == "maps" else "right")
        for row in accumulate_rows:
            table.add_row(row["maps_kind"], str(row["thresholds"]), f"{row['wsolevaluation_ms_per_map']:.2f}",
                          f"{row['component_ms_per_map']:.3f}", f"{row['component_vs_wsolevaluation']:.1f}",
                          f"{row['contour_ms_per_map']:.3f}", f"{row['contour_vs_wsolevaluation']:.1f}",
                          "yes" if row["contour_counts_equal"] else "NO")
        console.print(table)
    for note in notes:
        print_message(note, "note:", "yellow")

    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = {"benchmark": "eval_ops", "size": args.size, "percentile": args.percentile,
                  "checkpoint": str(args.checkpoint) if args.checkpoint else None,
                  "cpu": platform.processor() or platform.machine(), "cores": cores,
                  "torch": torch.__version__, "opencv": cv2.__version__ if cv2 is not None else None,
                  "gpu": torch.cuda.get_device_name() if cuda else None,
                  "rows": rows, "accumulate_rows": accumulate_rows, "notes": notes}
        args.out.write_text(json.dumps(report, indent=2))
        console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
