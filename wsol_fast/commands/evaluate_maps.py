"""``wsol-fast evaluate-maps`` (``launch/evaluate_maps.py``): wsolevaluation's metrics of score maps
saved by any method, against one wsolevaluation metadata split folder.

- **Maps** (``--maps``): a folder where the map of image ``ID`` (a line of ``image_ids.txt``, e.g.
  ``test/Black_Footed_Albatross_0046_18.jpg``) is ``ID + ".npy"`` (``test/...0046_18.jpg.npy``:
  what wsolevaluation's ``inference.py`` saves and its ``evaluation.py`` loads), or else ``ID``
  with its suffix replaced by ``.npy`` (``test/...0046_18.npy``: the layout its docstring
  describes); or one ``.npz`` file whose keys are the IDs. Each map is a 2-D float array with
  values in [0, 1] (wsolevaluation's ``check_scoremap_validity``); a missing or invalid map
  stops the command naming its image. Maps of images not in the split are ignored and counted.
- **Map size**: any (H, W), e.g. wsolevaluation's 224 x 224 or the original image's size. The
  boxes are scaled from the image's size (``image_sizes.txt``) to the map's, ``int(x * W / width)``
  and ``int(y * H / height)``: wsolevaluation's ``resize_bbox`` (``data.resize_boxes``), which for
  224 x 224 maps is exactly its own evaluation.
- **Masks** (``--mask-root``: an OpenImages split, ``localization.txt`` naming mask files): PxAP
  instead of the box metrics; the masks are read at the map's size (wsolevaluation's nearest
  resize), so mask maps must be square.
- **Predictions** (``--predictions``, optional): ``ID,LABEL`` or ``ID,L1 L2 L3 L4 L5`` lines
  (0-based labels, best first, the same count on every line; lines of other images ignored)
  give classification accuracy and Top-1 / Top-5 Loc and GT-known at the MaxBoxAcc-best
  threshold (IoU >= 0.5 there, MaxBoxAcc's rule: GT-known equals MaxBoxAcc).
"""
import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from .. import metrics
from ..data import WSOLSplit, load_masks, read_wsolevaluation, resize_boxes
from ..data.annotations import annotation_error, numbered_lines
from ..engine.progress import console, make_progress, print_message, results_table
from ..errors import WsolFastError
from ..fields import positive_int
from .common import add_device_argument, add_sweep_arguments, chosen_device, run_command

MAX_LABELS = 5  # labels a prediction line may give: top-1 only, or top-5
LOCATED_IOU = 0.5  # MaxBoxAcc's IoU threshold δ: an image is localized at IoU >= it
SCORE_ROWS = 4096  # images whose (C,) score rows are built at once from their predicted labels


def evaluate_maps_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Score maps saved by any method with wsolevaluation's metrics: "
                                                 "MaxBoxAcc and MaxBoxAccV2 (PxAP on a mask split); Top-1/Top-5 "
                                                 "Cls and Loc with --predictions.")
    parser.add_argument("--maps", required=True, type=Path,
                        help="folder of ID.npy maps (nested as the image ids), or one .npz keyed by image id")
    parser.add_argument("--metadata", required=True, type=Path,
                        help="wsolevaluation split folder: image_ids.txt, class_labels.txt, image_sizes.txt, "
                             "localization.txt")
    parser.add_argument("--data-root", required=True, type=Path,
                        help="folder the image ids are relative to (the metadata reader checks the images exist)")
    parser.add_argument("--mask-root", type=Path,
                        help="a mask split (OpenImages): localization.txt lists masks under this folder; "
                             "scores PxAP (maps must be square)")
    parser.add_argument("--predictions", type=Path,
                        help="lines ID,LABEL or ID,L1 L2 L3 L4 L5 (0-based, best first): adds classification "
                             "and Top-1/Top-5 Loc at the MaxBoxAcc-best threshold")
    add_sweep_arguments(parser)
    parser.add_argument("--batch-size", type=positive_int, default=64, help="maps per sweep batch")
    add_device_argument(parser, "the sweep (the contour rule always runs on the CPU)", default="cpu")
    parser.add_argument("--out", type=Path, help="JSON file for the results")
    return parser


def evaluate_maps_main(argv: list[str] | None = None) -> int:
    """``wsol-fast evaluate-maps``; returns the exit status."""
    return run_command(_evaluate_maps, evaluate_maps_parser().parse_args(argv))


class MapStore:
    """The maps of ``--maps``: a folder of ``.npy`` files or one ``.npz``; ``load(image_id)``
    gives one valid map, and ``extra()`` the maps never loaded (other images)."""

    def __init__(self, path: Path):
        self.path = path
        if path.is_dir():
            self.archive = None
        elif path.is_file():
            try:
                self.archive = np.load(path, allow_pickle=False)  # maps only: no pickled objects
            except (OSError, ValueError) as error:
                raise WsolFastError(f"--maps {path}: {error}") from error
            if not isinstance(self.archive, np.lib.npyio.NpzFile):
                raise WsolFastError(f"--maps {path}: expected a folder of .npy maps or one .npz file")
        else:
            raise FileNotFoundError(f"--maps: no such folder or .npz file: {path}")
        self.used: set[str] = set()  # files (folder) or keys (.npz) loaded

    def _locate(self, image_id: str) -> str:
        """The file (folder) or key (.npz) holding the map of ``image_id``."""
        if self.archive is not None:
            if image_id in self.archive.files:
                return image_id
            raise WsolFastError(f"no map of image {image_id}: {self.path} has no key {image_id!r}")
        candidates = [self.path / (image_id + ".npy"), (self.path / image_id).with_suffix(".npy")]
        for candidate in candidates:
            if candidate.is_file():
                return str(candidate)
        raise WsolFastError(f"no map of image {image_id}: neither {candidates[0]} nor {candidates[1]} exists")

    def load(self, image_id: str) -> np.ndarray:
        """The map (H, W) of ``image_id``, checked (``check_map``), in native byte order."""
        where = self._locate(image_id)
        source = f"{self.path}[{where!r}]" if self.archive is not None else where
        try:
            scoremap = self.archive[where] if self.archive is not None else np.load(where, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise WsolFastError(f"map of image {image_id} ({source}): {error}") from error
        self.used.add(where)
        return check_map(scoremap, f"map of image {image_id} ({source})")

    def extra(self) -> list[str]:
        """The maps (files or keys) present but not loaded: images outside the split."""
        present = (self.archive.files if self.archive is not None
                   else [str(p) for p in sorted(self.path.rglob("*.npy"))])
        return [name for name in present if name not in self.used]

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()


def check_map(scoremap: np.ndarray, what: str) -> np.ndarray:
    """wsolevaluation's ``check_scoremap_validity``: a non-empty 2-D float array (float16, 32 or
    64) with finite values in [0, 1]; raises WsolFastError beginning with ``what``. Returns
    the map in native byte order."""
    if scoremap.ndim != 2 or scoremap.size == 0:
        raise WsolFastError(f"{what}: expected a non-empty 2-D (H, W) array, got shape {scoremap.shape}")
    if scoremap.dtype.kind != "f" or scoremap.dtype.itemsize > 8:
        raise WsolFastError(f"{what}: expected float16, float32 or float64 values, got {scoremap.dtype}")
    if not np.isfinite(scoremap).all():
        raise WsolFastError(f"{what}: {int((~np.isfinite(scoremap)).sum())} non-finite value(s)")
    low, high = float(scoremap.min()), float(scoremap.max())
    if low < 0 or high > 1:
        raise WsolFastError(f"{what}: values must lie in [0, 1], found min {low:g}, max {high:g}")
    return scoremap.astype(scoremap.dtype.newbyteorder("="), copy=False)


def boxes_at_map_size(boxes: np.ndarray, image_size, map_shape: tuple[int, int]) -> np.ndarray:
    """Boxes (K, 4) ``x0, y0, x1, y1`` in the pixels of an image of ``image_size`` (width, height)
    -> (K, 4) float32 in the pixels of a map of ``map_shape`` (H, W): ``int(x * W / width)`` and
    ``int(y * H / height)`` (``data.resize_boxes``, wsolevaluation's ``resize_bbox``)."""
    width, height = image_size
    along_x = resize_boxes(boxes, width, height, map_shape[1])
    along_y = resize_boxes(boxes, width, height, map_shape[0])
    return np.where(np.array([True, False, True, False]), along_x, along_y)


def image_ids_of(split: WSOLSplit) -> list[str]:
    """The split's image ids: each image path relative to the split's root, as in image_ids.txt."""
    return [Path(path).relative_to(split.root).as_posix() for path in split.image_paths.strings(range(len(split)))]


def read_predictions(path: Path, image_ids: list[str]) -> np.ndarray:
    """Predicted labels (N, K) int64 in the order of ``image_ids`` from ``ID,L1[ L2 ...]`` lines
    (K = 1 or ``MAX_LABELS`` distinct labels >= 0, best first, the same K on every line); lines
    of images not in ``image_ids`` are ignored. Malformed lines raise naming file and line."""
    order = {image_id: index for index, image_id in enumerate(image_ids)}
    rows: dict[int, list[int]] = {}
    count = None
    for lineno, line in numbered_lines(path):
        image_id, comma, text = line.rpartition(",")
        image_id = image_id.strip()
        try:
            labels = [int(label) for label in text.split()]
        except ValueError:
            labels = []
        if not comma or not image_id or len(labels) not in (1, MAX_LABELS) or min(labels) < 0:
            raise annotation_error(path, lineno, f"expected ID,LABEL or ID followed by {MAX_LABELS} "
                                                 "space-separated labels, 0-based integers", line)
        if len(set(labels)) != len(labels):
            raise annotation_error(path, lineno, "a label is repeated", line)
        if count not in (None, len(labels)):
            raise annotation_error(path, lineno, f"{len(labels)} label(s), earlier lines give {count}", line)
        count = len(labels)
        if image_id in order:
            if order[image_id] in rows:
                raise annotation_error(path, lineno, f"second prediction for {image_id}", line)
            rows[order[image_id]] = labels
    missing = [image_id for image_id, index in order.items() if index not in rows]
    if missing:
        raise WsolFastError(f"{path}: no prediction for {len(missing)} image(s) of the split, e.g. {missing[:5]}")
    return np.array([rows[index] for index in range(len(image_ids))], dtype=np.int64)


def prediction_scores(predicted: np.ndarray, width: int) -> torch.Tensor:
    """Labels (B, K), best first -> scores (B, width) that rank them first, in order (K, K-1 ...
    1; 0 elsewhere): what ``metrics.ClassificationCounts`` and ``topk_correct`` take."""
    labels = torch.from_numpy(predicted)
    scores = torch.zeros(labels.shape[0], width)
    ranks = torch.arange(labels.shape[1], 0, -1, dtype=scores.dtype).expand(labels.shape)
    return scores.scatter_(1, labels, ranks)


def map_batches(store: MapStore, image_ids: list[str], batch_size: int) -> Iterator[tuple[list[int], torch.Tensor]]:
    """(indices, maps (B, H, W)) of the images in order, ``batch_size`` at a time, each batch
    split into groups of maps of one shape and dtype."""
    for start in range(0, len(image_ids), batch_size):
        groups: dict[tuple, list[tuple[int, np.ndarray]]] = {}
        for index in range(start, min(start + batch_size, len(image_ids))):
            scoremap = store.load(image_ids[index])
            groups.setdefault((scoremap.shape, scoremap.dtype), []).append((index, scoremap))
        for members in groups.values():
            yield [index for index, _ in members], torch.from_numpy(np.stack([m for _, m in members]))


class BoxScores:
    """A box split's scores: MaxBoxAcc counts over the thresholds (T,), and ``located`` (N, T)
    bool, image n localized (IoU >= 0.5 of its largest box) at threshold t."""

    def __init__(self, split: WSOLSplit, thresholds: np.ndarray, box_rule: str):
        self.split, self.box_rule = split, box_rule
        self.counts = metrics.MaxBoxAccCounts(thresholds)
        self.located = torch.zeros(len(split), len(thresholds), dtype=torch.bool)

    def update(self, indices: list[int], maps: torch.Tensor) -> None:
        """maps (B, H, W) of the images ``indices``."""
        gt = [torch.from_numpy(boxes_at_map_size(self.split.boxes[i], self.split.sizes[i], maps.shape[1:]))
              for i in indices]
        largest, every = metrics.threshold_sweep_ious(maps, gt, self.counts.thresholds, box_rule=self.box_rule)
        self.counts.update(largest, every)
        self.located[indices] = largest.cpu() >= LOCATED_IOU

    def summary(self) -> dict:
        return {"box_rule": self.box_rule, **self.counts.summary()}

    def located_at_best(self) -> torch.Tensor:
        """(N,) bool: localized at the MaxBoxAcc-best threshold."""
        best = self.counts.thresholds.tolist().index(self.counts.summary()["maxboxacc_best_threshold"])
        return self.located[:, best]


class MaskScores:
    """A mask split's scores (OpenImages): PxAP over the thresholds (T,). The masks are read at
    the map's size (as wsolevaluation reads them at its maps' 224 x 224), so maps must be square."""

    def __init__(self, split: WSOLSplit, thresholds: np.ndarray, image_ids: list[str]):
        self.split, self.image_ids = split, image_ids
        self.counts = metrics.PxAPCounts(thresholds)

    def update(self, indices: list[int], maps: torch.Tensor) -> None:
        """maps (B, S, S) of the images ``indices``."""
        height, width = maps.shape[1:]
        if height != width:
            raise WsolFastError(f"map of image {self.image_ids[indices[0]]}: {height}x{width}, but a mask split "
                                "needs square maps (the masks are resized to them)")
        masks, ignore = load_masks([self.split.masks[i] for i in indices], height)
        self.counts.update(maps, torch.from_numpy(masks).to(maps.device), torch.from_numpy(ignore).to(maps.device))

    def summary(self) -> dict:
        return self.counts.summary()


def score_maps(store: MapStore, image_ids: list[str], scores: BoxScores | MaskScores, batch_size: int,
               device: str) -> None:
    """Feed ``scores`` the map of every image, in batches, with a progress bar."""
    with make_progress() as progress:
        task = progress.add_task("maps", total=len(image_ids), info="", unit="images")
        for indices, maps in map_batches(store, image_ids, batch_size):
            scores.update(indices, maps.to(device))
            progress.update(task, advance=len(indices))


def prediction_results(predicted: np.ndarray, labels: np.ndarray, num_classes: int,
                       located: torch.Tensor | None) -> dict:
    """Classification (top-1, and top-5 with five labels a line) and, given the images
    ``located`` (N,) bool, GT-known and Top-1 (Top-5) Loc; per image and per class (%)."""
    width = max(num_classes, int(predicted.max()) + 1)
    classification = metrics.ClassificationCounts(num_classes)
    localization = metrics.LocalizationCounts(num_classes, iou_threshold=LOCATED_IOU)
    for start in range(0, len(labels), SCORE_ROWS):
        rows = slice(start, start + SCORE_ROWS)
        scores, truth = prediction_scores(predicted[rows], width), torch.from_numpy(labels[rows])
        classification.update(scores, truth)
        if located is not None:  # a located image enters as IoU 1, the others as 0
            localization.update(located[rows].double(), truth, *metrics.topk_correct(scores, truth))
    result = {**classification.summary(), **(localization.summary() if located is not None else {})}
    if predicted.shape[1] < MAX_LABELS:
        result = {name: value for name, value in result.items() if not name.startswith("top5")}
    return result


def _evaluate_maps(args: argparse.Namespace) -> int:
    split = read_wsolevaluation(args.metadata, args.data_root, masks=args.mask_root is not None,
                                mask_root=args.mask_root)
    if split.masks is None and not any(len(boxes) for boxes in split.boxes):
        raise WsolFastError(f"--metadata {args.metadata}: no localization.txt, nothing to score the maps against")
    image_ids = image_ids_of(split)
    predicted = read_predictions(args.predictions, image_ids) if args.predictions else None
    thresholds = metrics.default_thresholds(args.step)
    scores = (BoxScores(split, thresholds, args.box_rule) if split.masks is None
              else MaskScores(split, thresholds, image_ids))
    store = MapStore(args.maps)
    try:
        score_maps(store, image_ids, scores, args.batch_size, chosen_device(args.device))
        extra = store.extra()
    finally:
        store.close()
    result = {"maps": str(args.maps), "metadata": str(args.metadata), "step": args.step, "images": len(split),
              "extra_maps": len(extra), **scores.summary()}
    if predicted is not None:
        located = scores.located_at_best() if isinstance(scores, BoxScores) else None
        result.update(prediction_results(predicted, split.labels, split.num_classes, located))
        if located is not None:
            result["loc_threshold"] = result["maxboxacc_best_threshold"]
    if extra:
        print_message(f"ignored {len(extra)} map(s) of images not in {args.metadata}, e.g. {extra[:3]}", "note:")
    print_results(result, f"{args.maps} on {args.metadata}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return 0


def print_results(result: dict, title: str) -> None:
    """The main numbers of ``result`` as one table row (thresholds with all their digits)."""
    columns = [c for c in ("images", "maxboxacc", "maxboxacc_best_threshold", "maxboxaccv2", "pxap", "top1_cls",
                           "top5_cls", "gt_known", "top1_loc", "top5_loc") if c in result]
    row = {name: f"{value:g}" if name.endswith("_threshold") else value for name, value in result.items()}
    how = f"box rule {result['box_rule']}" if "box_rule" in result else "masks"
    console.print(results_table(f"{title}: {how}, step {result['step']:g}", [row], columns))
