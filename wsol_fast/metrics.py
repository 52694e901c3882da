"""Localization and classification metrics (METHOD.md §6).

IoU uses the "+1" convention: a box ``(x0, y0, x1, y1)`` covers ``(x1 - x0 + 1) * (y1 - y0 + 1)``.
Accumulators keep integer counts in a dict of tensors, so batches and ranks just add up:
``state_dict``/``load_state_dict`` move the counts (all-reduce the tensors of ``state_dict``
with SUM across ranks). ``summary`` returns
floats, accuracies in percent.
"""
import numpy as np
import torch

from .ops import eval_reference, evaluation, ext
from .ops.checks import check_maps, pxap_edges
from .ops.registry import FastPath, Op

IOU_THRESHOLDS = (0.3, 0.5, 0.7)


def _boxes(boxes, name: str, dims: tuple[int, ...]) -> torch.Tensor:
    tensor = torch.as_tensor(boxes)
    if tensor.ndim not in dims or tensor.shape[-1] != 4:
        shapes = " or ".join(f"{d}-D (..., 4)" for d in dims)
        raise ValueError(f"{name}: expected boxes of shape {shapes}, got {tuple(tensor.shape)}")
    tensor = tensor.to(torch.float64)
    inverted = (tensor[..., 2] < tensor[..., 0]) | (tensor[..., 3] < tensor[..., 1])
    if bool(inverted.any()):
        where = torch.nonzero(inverted)[0].tolist()
        raise ValueError(f"{name}: box at index {where} has x1 < x0 or y1 < y0: "
                         f"{tensor[tuple(where)].tolist()}")
    return tensor


def ground_truth_boxes(gt, gt_valid=None) -> tuple[torch.Tensor, torch.Tensor]:
    """GT boxes as padded (N, K, 4) float64 and validity (N, K) bool, from a padded tensor
    (with ``gt_valid``, default all valid) or a list of N tensors (K_i, 4). Every image needs a
    valid box."""
    if isinstance(gt, (list, tuple)):
        if gt_valid is not None:
            raise ValueError("gt_valid: only for padded (N, K, 4) ground truth, not for a list")
        per_image = [_boxes(boxes, f"gt[{i}]", (2,)) for i, boxes in enumerate(gt)]
        most = max((len(boxes) for boxes in per_image), default=0)
        padded = torch.zeros(len(per_image), most, 4, dtype=torch.float64)
        valid = torch.zeros(len(per_image), most, dtype=torch.bool)
        for i, boxes in enumerate(per_image):
            padded[i, :len(boxes)] = boxes
            valid[i, :len(boxes)] = True
    else:
        padded = _boxes(gt, "gt", (3,))
        valid = (torch.ones(padded.shape[:2], dtype=torch.bool) if gt_valid is None
                 else torch.as_tensor(gt_valid, dtype=torch.bool, device=padded.device))
        if valid.shape != padded.shape[:2]:
            raise ValueError(f"gt_valid: shape {tuple(valid.shape)} does not match "
                             f"gt {tuple(padded.shape)}")
    empty = ~valid.any(dim=1)
    if bool(empty.any()):
        missing = torch.nonzero(empty).flatten().tolist()[:10]
        raise ValueError(f"gt: image index(es) {missing} have no box")
    return padded, valid


def box_iou(pred, gt, gt_valid=None) -> torch.Tensor:
    """Best IoU ("+1" convention) of each predicted box over its image's GT boxes.
    pred (N, 4) or (N, T, 4); gt (N, K, 4) padded with ``gt_valid`` (N, K) bool, or a list of
    N tensors (K_i, 4) -> (N,) or (N, T) float64; boxes that do not overlap have IoU 0."""
    predicted = _boxes(pred, "pred", (2, 3))
    boxes, valid = ground_truth_boxes(gt, gt_valid)
    boxes, valid = boxes.to(predicted.device), valid.to(predicted.device)
    if boxes.shape[0] != predicted.shape[0]:
        raise ValueError(f"pred has {predicted.shape[0]} images but gt has {boxes.shape[0]}")
    if predicted.ndim == 3:
        boxes, valid = boxes.unsqueeze(1), valid.unsqueeze(1)
    p = predicted.unsqueeze(-2)  # (N, [T,] 1, 4) against (N, [1,] K, 4)

    def side(low: int, high: int) -> torch.Tensor:
        return (torch.minimum(p[..., high], boxes[..., high]) - torch.maximum(p[..., low], boxes[..., low])
                + 1).clamp(min=0)

    overlap = side(0, 2) * side(1, 3)
    area_p = (p[..., 2] - p[..., 0] + 1) * (p[..., 3] - p[..., 1] + 1)
    area_g = (boxes[..., 2] - boxes[..., 0] + 1) * (boxes[..., 3] - boxes[..., 1] + 1)
    iou = overlap / (area_p + area_g - overlap)
    return torch.where(valid, iou, -1.0).amax(dim=-1)


def max_iou_over_boxes(pred: list[torch.Tensor], gt, gt_valid=None) -> torch.Tensor:
    """Best IoU over all predicted boxes of each image (MaxBoxAccV2). pred: N tensors (K_b, 4);
    gt as in ``box_iou`` -> (N,) float64; 0 for an image without predicted boxes."""
    boxes, valid = ground_truth_boxes(gt, gt_valid)
    if len(pred) != boxes.shape[0]:
        raise ValueError(f"pred has {len(pred)} images but gt has {boxes.shape[0]}")
    counts = torch.tensor([len(b) for b in pred], dtype=torch.int64)
    best = torch.zeros(len(pred), dtype=torch.float64)
    if int(counts.sum()) == 0:
        return best
    owner = torch.repeat_interleave(torch.arange(len(pred)), counts)
    flat = torch.cat([torch.as_tensor(b).reshape(-1, 4).cpu() for b in pred])
    iou = box_iou(flat, boxes[owner], valid[owner])
    return best.scatter_reduce(0, owner, iou, "amax", include_self=True)


def _valid_first(gt, gt_valid) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground truth as padded (N, K, 4) with each image's valid boxes first, and validity (N, K):
    the extension takes the first ``count`` boxes of each image."""
    padded, valid = ground_truth_boxes(gt, gt_valid)
    valid_first = torch.argsort((~valid).int(), dim=1, stable=True)
    return padded.gather(1, valid_first.unsqueeze(-1).expand(-1, -1, 4)), valid.gather(1, valid_first)


def _sweep_ious_in_one_pass(maps: torch.Tensor, gt, levels: torch.Tensor,
                            gt_valid=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``threshold_sweep_ious`` through the extension: every threshold in one pass."""
    padded, valid = _valid_first(gt, gt_valid)
    boxes, every = ext.largest_component_boxes_and_best_iou(maps, levels, padded.to(maps.device),
                                                            valid.sum(dim=1).to(maps.device), empty="zero")
    return box_iou(boxes.cpu(), padded, valid), every.cpu()


def _best_ious_per_threshold(maps: torch.Tensor, gt, levels: torch.Tensor, gt_valid, largest_boxes,
                             all_boxes) -> tuple[torch.Tensor, torch.Tensor]:
    """``threshold_sweep_ious`` from a reference rule: ``largest_boxes(maps, levels)`` (B, T, 4)
    and ``all_boxes(maps, level)`` (B tensors (K_b, 4), K_b = 0 counting as [0, 0, 0, 0])."""
    largest = box_iou(largest_boxes(maps, levels).cpu(), gt, gt_valid)
    zero_box = torch.zeros(1, 4, dtype=torch.int64)
    every = []
    for level in levels.tolist():
        boxes = [b.cpu() if len(b) else zero_box for b in all_boxes(maps, level)]
        every.append(max_iou_over_boxes(boxes, gt, gt_valid))
    return largest, torch.stack(every, dim=1)


def _sweep_ious_per_threshold(maps: torch.Tensor, gt, levels: torch.Tensor,
                              gt_valid=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``threshold_sweep_ious`` by the reference ops: components labelled once per threshold."""
    return _best_ious_per_threshold(maps, gt, levels, gt_valid,
                                    lambda m, t: eval_reference.largest_component_boxes(m, t, empty="zero"),
                                    eval_reference.all_component_boxes)


def _contour_ious_in_one_pass(maps: torch.Tensor, gt, levels: torch.Tensor,
                              gt_valid=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``threshold_sweep_ious`` with the contour rule through the extension (one pass per map)."""
    padded, valid = _valid_first(gt, gt_valid)
    boxes, every = ext.contour_sweep(maps, levels, padded, valid.sum(dim=1))
    return box_iou(boxes, padded, valid), every


def _contour_ious_per_threshold(maps: torch.Tensor, gt, levels: torch.Tensor,
                                gt_valid=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``threshold_sweep_ious`` with the contour rule by the reference (labelled per threshold)."""
    return _best_ious_per_threshold(maps, gt, levels, gt_valid, eval_reference.largest_contour_boxes,
                                    eval_reference.all_contour_boxes)


# Box rules of the sweep: the largest 8-connected component by pixel count (the BAS protocol's
# rule, and this project's default), or wsolevaluation's exact contour rule (cv2.findContours).
_THRESHOLD_SWEEPS = {
    "component": Op("threshold_sweep_ious", _sweep_ious_per_threshold,
                    FastPath("ext", _sweep_ious_in_one_pass, evaluation.extension_unavailable, warn=True)),
    "contour": Op("contour_sweep_ious", _contour_ious_per_threshold,
                  FastPath("ext", _contour_ious_in_one_pass, evaluation.extension_unbuilt, warn=True)),
}
BOX_RULES = tuple(_THRESHOLD_SWEEPS)


def threshold_sweep_ious(maps: torch.Tensor, gt, thresholds, gt_valid=None,
                         box_rule: str = BOX_RULES[0]) -> tuple[torch.Tensor, torch.Tensor]:
    """wsolevaluation's box sweep: maps (B, H, W) normalized float, thresholds (T,) ->
    (best IoU of the largest box, best IoU over all boxes), each (B, T) float64. ``box_rule``
    (``BOX_RULES``): "component" boxes the 8-connected components of ``maps > t``; "contour" is
    wsolevaluation's rule exactly (uint8 maps, cv2.findContours outer and hole contours, the
    largest by cv2.contourArea). No box at all counts as [0, 0, 0, 0], as in wsolevaluation.
    The extension does every threshold in one pass; the reference labels once per threshold."""
    if box_rule not in _THRESHOLD_SWEEPS:
        raise ValueError(f"box_rule={box_rule!r}: expected one of {', '.join(BOX_RULES)}")
    levels = torch.as_tensor(thresholds, dtype=torch.float64).flatten()
    return _THRESHOLD_SWEEPS[box_rule](maps, gt, levels, gt_valid)


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


def default_thresholds(step: float = 0.01) -> np.ndarray:
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
