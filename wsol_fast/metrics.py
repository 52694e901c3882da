"""Localization and classification metrics (METHOD.md §6).

The box IoU ("+1" convention: ``ops.box_iou``) and wsolevaluation's threshold sweep (an op with
a reference and an extension path: ``ops.evaluation``) are re-exported here with the counts
they feed. Accumulators keep integer counts in a dict of tensors, so batches and ranks just add
up: ``state_dict``/``load_state_dict`` move the counts (all-reduce the tensors of
``state_dict`` with SUM across ranks). ``summary`` returns floats, accuracies in percent.
"""
import numpy as np
import torch

from .ops import evaluation
from .ops.box_iou import box_iou, ground_truth_boxes, max_iou_over_boxes
from .ops.checks import check_maps, pxap_edges
from .ops.evaluation import BOX_RULES, threshold_sweep_ious

__all__ = ["BOX_RULES", "IOU_THRESHOLDS", "THRESHOLD_STEP", "ClassificationCounts", "LocalizationCounts",
           "MaxBoxAccCounts", "PxAPCounts", "box_iou", "default_thresholds", "ground_truth_boxes",
           "max_iou_over_boxes", "threshold_sweep_ious", "topk_correct"]

IOU_THRESHOLDS = (0.3, 0.5, 0.7)
THRESHOLD_STEP = 0.01  # wsolevaluation's map-threshold spacing (its cam_curve_interval)


def topk_correct(scores: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """scores (B, C), labels (B,) int -> (top-1 correct, top-5 correct), each (B,) bool
    (top-5 is top-C when C < 5)."""
    if scores.ndim != 2 or labels.shape != scores.shape[:1]:
        raise ValueError(f"scores {tuple(scores.shape)} and labels {tuple(labels.shape)}: "
                         "expected (B, C) and (B,)")
    ranked = scores.topk(min(5, scores.shape[1]), dim=1).indices
    hits = ranked == labels.to(ranked.device).unsqueeze(1)
    return hits[:, 0], hits.any(dim=1)


def _percent(part: torch.Tensor, whole: torch.Tensor) -> float:
    return 100.0 * float(part) / float(whole)


def _class_mean_percent(part: torch.Tensor, whole: torch.Tensor) -> float:
    """Mean over classes with images of the per-class accuracy, in percent."""
    seen = whole > 0
    return 100.0 * float((part[seen].double() / whole[seen].double()).mean())


class _Counts:
    """Integer counts that add up; subclasses fill ``self.state`` in ``__init__``."""

    state: dict[str, torch.Tensor]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: counts.clone() for name, counts in self.state.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if set(state) != set(self.state):
            raise ValueError(f"{type(self).__name__}: state keys {sorted(state)} != {sorted(self.state)}")
        for name, counts in state.items():
            if tuple(counts.shape) != tuple(self.state[name].shape):
                raise ValueError(f"{type(self).__name__}: state {name!r} has shape {tuple(counts.shape)}, "
                                 f"expected {tuple(self.state[name].shape)}")
            self.state[name] = counts.to(self.state[name]).clone()

    def _require_images(self, images: torch.Tensor) -> None:
        if int(images.sum()) == 0:
            raise ValueError(f"{type(self).__name__}: no image counted yet")


def _check_labels(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.dtype.is_floating_point:
        raise ValueError(f"labels: expected a 1-D integer tensor, got {labels.dtype} {tuple(labels.shape)}")
    outside = (labels < 0) | (labels >= num_classes)
    if bool(outside.any()):
        raise ValueError(f"labels: {labels[outside].tolist()[:10]} outside [0, {num_classes})")
    return labels.long()


class ClassificationCounts(_Counts):
    """Top-1 / top-5 classification counts per class."""

    def __init__(self, num_classes: int, device="cpu"):
        self.num_classes = num_classes
        self.state = {name: torch.zeros(num_classes, dtype=torch.int64, device=device)
                      for name in ("images", "top1", "top5")}

    def update(self, scores: torch.Tensor, labels: torch.Tensor) -> None:
        """scores (B, C) (logits or probabilities), labels (B,) int."""
        labels = _check_labels(labels, self.num_classes)
        top1, top5 = topk_correct(scores, labels)
        device = self.state["images"].device
        labels = labels.to(device)
        for name, flags in (("images", torch.ones_like(top1)), ("top1", top1), ("top5", top5)):
            self.state[name].index_add_(0, labels, flags.to(device=device, dtype=torch.int64))

    def summary(self) -> dict[str, float]:
        """top1_cls, top5_cls (per image) and their *_class_mean (mean over classes with images)."""
        images = self.state["images"]
        self._require_images(images)
        result = {}
        for name in ("top1", "top5"):
            result[f"{name}_cls"] = _percent(self.state[name].sum(), images.sum())
            result[f"{name}_cls_class_mean"] = _class_mean_percent(self.state[name], images)
        return result


class LocalizationCounts(_Counts):
    """GT-known, top-1 and top-5 localization at a fixed map threshold (BAS protocol): an
    image is localized when its best IoU > ``iou_threshold``; top-k loc also needs the true
    class in the top k."""

    def __init__(self, num_classes: int, iou_threshold: float = 0.5, device="cpu"):
        self.num_classes = num_classes
        self.iou_threshold = float(iou_threshold)
        self.state = {name: torch.zeros(num_classes, dtype=torch.int64, device=device)
                      for name in ("images", "gt_known", "top1_loc", "top5_loc")}

    def update(self, iou: torch.Tensor, labels: torch.Tensor, top1_correct: torch.Tensor,
               top5_correct: torch.Tensor) -> None:
        """iou (B,) best IoU per image, labels (B,) int, top1/top5_correct (B,) bool."""
        labels = _check_labels(labels, self.num_classes)
        device = self.state["images"].device
        iou, top1, top5 = (torch.as_tensor(x).to(device) for x in (iou, top1_correct, top5_correct))
        if not iou.shape == top1.shape == top5.shape == labels.shape:
            raise ValueError(f"iou {tuple(iou.shape)}, labels {tuple(labels.shape)}, "
                             f"top1 {tuple(top1.shape)}, top5 {tuple(top5.shape)}: expected one (B,) each")
        located = iou > self.iou_threshold
        flags = {"images": torch.ones_like(located), "gt_known": located,
                 "top1_loc": located & top1.bool(), "top5_loc": located & top5.bool()}
        labels = labels.to(device)
        for name, value in flags.items():
            self.state[name].index_add_(0, labels, value.long())

    def summary(self) -> dict[str, float]:
        """gt_known, top1_loc, top5_loc (per image) and their *_class_mean."""
        images = self.state["images"]
        self._require_images(images)
        result = {}
        for name in ("gt_known", "top1_loc", "top5_loc"):
            result[name] = _percent(self.state[name].sum(), images.sum())
            result[f"{name}_class_mean"] = _class_mean_percent(self.state[name], images)
        return result


def default_thresholds(step: float = THRESHOLD_STEP) -> np.ndarray:
    """wsolevaluation's map thresholds ``numpy.arange(0, 1, step)`` (float64)."""
    return np.arange(0, 1, step)


class MaxBoxAccCounts(_Counts):
    """MaxBoxAcc and MaxBoxAccV2 (wsolevaluation protocol): per (map threshold, IoU threshold
    δ), the number of images whose best IoU is >= δ, for the largest component's box and for
    the best of all components' boxes."""

    def __init__(self, thresholds=None, iou_thresholds=IOU_THRESHOLDS, device="cpu"):
        levels = default_thresholds() if thresholds is None else thresholds
        self.thresholds = torch.as_tensor(levels, dtype=torch.float64).flatten()
        self.iou_thresholds = torch.as_tensor(iou_thresholds, dtype=torch.float64).flatten()
        if self.thresholds.numel() == 0 or self.iou_thresholds.numel() == 0:
            raise ValueError("MaxBoxAccCounts: needs at least one map threshold and one IoU threshold")
        if not bool((self.iou_thresholds == 0.5).any()):
            raise ValueError(f"iou_thresholds {self.iou_thresholds.tolist()}: MaxBoxAcc needs 0.5 among them")
        shape = (self.thresholds.numel(), self.iou_thresholds.numel())
        self.state = {"images": torch.zeros((), dtype=torch.int64, device=device),
                      "largest": torch.zeros(shape, dtype=torch.int64, device=device),
                      "all": torch.zeros(shape, dtype=torch.int64, device=device)}

    def update(self, largest_iou: torch.Tensor, all_iou: torch.Tensor) -> None:
        """largest_iou, all_iou (B, T) float: best IoU per image and map threshold of the
        largest component's box and of all components' boxes (``threshold_sweep_ious``)."""
        expected = (self.thresholds.numel(),)
        for name, iou in (("largest_iou", largest_iou), ("all_iou", all_iou)):
            if iou.ndim != 2 or tuple(iou.shape[1:]) != expected:
                raise ValueError(f"{name}: expected (B, {expected[0]}), got {tuple(iou.shape)}")
        if largest_iou.shape[0] != all_iou.shape[0]:
            raise ValueError(f"largest_iou has {largest_iou.shape[0]} images, all_iou {all_iou.shape[0]}")
        device = self.state["images"].device
        deltas = self.iou_thresholds.to(device)
        self.state["images"] += largest_iou.shape[0]
        for name, iou in (("largest", largest_iou), ("all", all_iou)):
            hits = iou.to(device=device, dtype=torch.float64).unsqueeze(2) >= deltas
            self.state[name] += hits.sum(dim=0)

    def summary(self) -> dict[str, float]:
        """maxboxacc (largest component, δ = 0.5) and its best_threshold; maxboxaccv2 (mean over
        δ) with, per δ, maxboxaccv2_iou{100δ} and its best threshold (the lowest on ties)."""
        images = self.state["images"]
        self._require_images(images)
        result = {}
        half = int(torch.nonzero(self.iou_thresholds == 0.5)[0])
        largest = self.state["largest"][:, half]
        best = int(largest.argmax())
        result["maxboxacc"] = _percent(largest[best], images)
        result["maxboxacc_best_threshold"] = float(self.thresholds[best])
        per_delta = []
        for column, delta in enumerate(self.iou_thresholds.tolist()):
            counts = self.state["all"][:, column]
            best = int(counts.argmax())
            name = f"maxboxaccv2_iou{round(delta * 100)}"
            per_delta.append(_percent(counts[best], images))
            result[name] = per_delta[-1]
            result[f"{name}_best_threshold"] = float(self.thresholds[best])
        result["maxboxaccv2"] = float(np.mean(per_delta))
        return result


class PxAPCounts(_Counts):
    """PxAP (wsolevaluation's MaskEvaluator): numpy.histogram of the map values at mask pixels
    and at the other pixels (ignored pixels outside the mask in neither) over the edges
    t_0, ..., t_{T-1}, 1, 2, 3, i.e. the bins [t_0, t_1), ..., [t_{T-1}, 1), [1, 2), [2, 3];
    PxAP is the area under the pixel precision-recall curve of the cut-offs ``value >= edge``."""

    def __init__(self, thresholds=None, device="cpu"):
        levels = default_thresholds() if thresholds is None else thresholds
        self.thresholds = torch.as_tensor(levels, dtype=torch.float64).flatten()
        bins = pxap_edges(self.thresholds).numel() - 1  # checks the thresholds
        self.state = {name: torch.zeros(bins, dtype=torch.int64, device=device)
                      for name in ("mask_hist", "other_hist")}

    def update(self, maps: torch.Tensor, masks, ignore=None) -> None:
        """maps (B, H, W) float in [0, 1]; masks (B, H, W) bool, the foreground; ignore
        (B, H, W) bool or None, pixels left out where not foreground. Masks move to the maps'
        device."""
        check_maps(maps)
        masks = torch.as_tensor(masks, device=maps.device)
        ignore = None if ignore is None else torch.as_tensor(ignore, device=maps.device)
        histograms = evaluation.pxap_histograms(maps, masks, ignore, self.thresholds)
        for name, counts in zip(("mask_hist", "other_hist"), histograms):
            self.state[name] += counts.sum(dim=0).to(self.state[name].device)

    def precision_recall(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel precision and recall, each (T + 2,) float64, of the cut-offs ``value >= e`` for
        e = 2, 1, t_{T-1}, ..., t_0 (wsolevaluation's order); precision is NaN (0 / 0, as in
        wsolevaluation) where no pixel reaches the cut-off. ValueError before any mask pixel."""
        true_hist, false_hist = (self.state[name].cpu().numpy().astype(np.float64)
                                 for name in ("mask_hist", "other_hist"))
        tp, fp = true_hist[::-1].cumsum(), false_hist[::-1].cumsum()
        if tp[-1] <= 0:
            raise ValueError(f"{type(self).__name__}: no positive ground truth: no mask pixel counted yet "
                             "(every mask empty or ignored)")
        with np.errstate(invalid="ignore"):
            precision = tp / (tp + fp)
        return precision, tp / tp[-1]  # tp[-1]: all mask pixels, wsolevaluation's tp + fn (exact)

    def summary(self) -> dict[str, float]:
        """pxap (%): sum of precision[i] * (recall[i] - recall[i - 1]) over i >= 1 where
        precision is defined, times 100, as wsolevaluation computes it (the dropped terms have
        no recall step). Its other error, no positive prediction, cannot follow a mask pixel."""
        precision, recall = self.precision_recall()
        defined = ~np.isnan(precision[1:])  # wsolevaluation: tp + fp != 0
        return {"pxap": float((precision[1:] * np.diff(recall))[defined].sum() * 100)}
