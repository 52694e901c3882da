"""Thin wrappers of the C++/CUDA evaluation extension ``wsol_fast._C``.

Same semantics as ``eval_reference`` (percentile-max normalization, largest 8-connected
component boxes at many thresholds, with the best "+1" IoU over all components for
MaxBoxAccV2; PxAP's histograms). Maps are ``(B, H, W)`` float32/float16/bfloat16/float64 tensors on the CPU or
(with a CUDA build) a GPU; any strides. Bad input raises ``ValueError`` naming the argument (and the map for NaN/Inf).
"""
import torch

from .checks import (PERCENTILE, as_thresholds, check_maps, check_percent, check_pixel_masks, empty_is_full,
                     pxap_edges)
from .quantize import wsolevaluation_levels

try:
    from wsol_fast import _C
except ImportError:  # not built (e.g. a source checkout without ``pip install -e .``)
    _C = None

def available() -> bool:
    """Whether the extension is built and importable."""
    return _C is not None


def has_cuda() -> bool:
    """Whether the extension was built with its CUDA implementations."""
    return _C is not None and bool(_C.with_cuda)


def _require_extension() -> None:
    if _C is None:
        raise RuntimeError("wsol_fast._C is not built: run `pip install --no-build-isolation -e .`")


def _compute_dtype(maps: torch.Tensor) -> torch.dtype:
    return torch.float64 if maps.dtype == torch.float64 else torch.float32


def _thresholds_for(maps: torch.Tensor, thresholds) -> torch.Tensor:
    """A float, a sequence or a 0-/1-D tensor -> (T,) tensor rounded to the maps' dtype (the
    reference compares ``maps > t`` in that dtype), held in the compute dtype on their device."""
    return as_thresholds(thresholds).to(maps.dtype).to(device=maps.device, dtype=_compute_dtype(maps))


def _ground_truth(gt_boxes, gt_counts, batch: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K, 4) boxes and (B,) counts (None: all K) -> float64 boxes, int64 counts on device."""
    boxes = torch.as_tensor(gt_boxes)
    if boxes.ndim != 3 or boxes.shape[0] != batch or boxes.shape[2] != 4:
        raise ValueError(f"gt_boxes: expected a ({batch}, K, 4) tensor, got shape {tuple(boxes.shape)}")
    boxes = boxes.to(device=device, dtype=torch.float64)
    if not bool(torch.isfinite(boxes).all()):
        raise ValueError("gt_boxes: NaN or Inf coordinates")
    if gt_counts is None:
        counts = torch.full((batch,), boxes.shape[1], dtype=torch.int64, device=device)
    else:
        counts = torch.as_tensor(gt_counts)
        if counts.shape != (batch,) or counts.is_floating_point():
            raise ValueError(f"gt_counts: expected ({batch},) integers, got {counts.dtype} "
                             f"of shape {tuple(counts.shape)}")
        counts = counts.to(device=device, dtype=torch.int64)
        if bool(((counts < 0) | (counts > boxes.shape[1])).any()):
            raise ValueError(f"gt_counts: values must lie in [0, K={boxes.shape[1]}]")
    return boxes, counts


def _sweep(maps, thresholds, empty, gt_boxes=None, gt_counts=None):
    """Runs the extension's threshold sweep with thresholds in any order (sorted for the
    kernel, results put back in the caller's order)."""
    _require_extension()
    check_maps(maps)
    levels = _thresholds_for(maps, thresholds)
    empty_full = empty_is_full(empty)
    order = None
    if levels.numel() > 1 and not bool((levels[1:] >= levels[:-1]).all()):
        levels, order = torch.sort(levels, stable=True)
    boxes, best_iou = _C.threshold_sweep(maps, levels, empty_full, gt_boxes, gt_counts)
    if order is not None:
        boxes = torch.empty_like(boxes).index_copy_(1, order, boxes)
        if best_iou is not None:
            best_iou = torch.empty_like(best_iou).index_copy_(1, order, best_iou)
    return boxes, best_iou


def contour_sweep(maps: torch.Tensor, thresholds, gt_boxes=None,
                  gt_counts=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """wsolevaluation's contour rule at every threshold in one pass per map (``quantize``;
    the definition is ``eval_reference.largest_contour_boxes`` / ``all_contour_boxes``): the
    largest contour's box (B, T, 4) int64 and, with gt_boxes (B, K, 4) / gt_counts (B,), the best
    "+1" IoU over every contour's box (B, T) float64 (the box [0, 0, 0, 0] without contours),
    else None. Runs on the CPU whatever the maps' device (the sweep is sequential per map; only
    the uint8 maps cross); results are on the CPU."""
    _require_extension()
    levels, steps = wsolevaluation_levels(maps, thresholds)
    if gt_boxes is None:
        return _C.contour_sweep(levels, steps)
    truth, counts = _ground_truth(gt_boxes, gt_counts, maps.shape[0], torch.device("cpu"))
    return _C.contour_sweep(levels, steps, truth, counts)


def percentile_max_normalize(maps: torch.Tensor, p: float = PERCENTILE) -> torch.Tensor:
    """clamp(M / P_p(M), 0, 1) per map, P_p = numpy.percentile's "linear" p-th percentile
    (p in [0, 100]); a map whose percentile is <= 0 gives 1 where M > 0, else 0.
    maps (B, H, W) float -> float32 (B, H, W). NaN/Inf -> ValueError naming the map."""
    _require_extension()
    check_maps(maps)
    return _C.percentile_max_normalize(maps, check_percent(p))


def largest_component_boxes(maps: torch.Tensor, thresholds, empty: str = "full") -> torch.Tensor:
    """Box of the largest 8-connected component of ``maps > t`` for every threshold t.
    maps (B, H, W) float, thresholds float | sequence | (T,) tensor -> (B, T, 4) int64
    ``(x0, y0, x1, y1)`` with exclusive maxima; ties go to the component whose first pixel comes
    first in raster order; an empty mask gives ``[0, 0, W, H]`` (``empty="full"``) or
    ``[0, 0, 0, 0]`` (``empty="zero"``). Thresholds are rounded to the maps' dtype."""
    return _sweep(maps, thresholds, empty)[0]


def largest_component_boxes_and_best_iou(maps: torch.Tensor, thresholds, gt_boxes, gt_counts=None,
                                         empty: str = "full") -> tuple[torch.Tensor, torch.Tensor]:
    """``largest_component_boxes`` and, in the same pass, the best "+1" IoU between any
    component's box and any ground-truth box at every threshold (MaxBoxAccV2); where the mask
    is empty, the IoU of the empty-mask box. gt_boxes (B, K, 4) ``(x0, y0, x1, y1)``, gt_counts
    (B,) valid boxes per image (None: all K) -> ((B, T, 4) int64, (B, T) float64)."""
    check_maps(maps)
    truth, counts = _ground_truth(gt_boxes, gt_counts, maps.shape[0], maps.device)
    return _sweep(maps, thresholds, empty, truth, counts)


def pxap_histograms(maps: torch.Tensor, masks: torch.Tensor, ignore: torch.Tensor | None,
                    thresholds) -> tuple[torch.Tensor, torch.Tensor]:
    """numpy.histogram of each map's values at its mask pixels and at its other pixels (pixels
    of ``ignore`` outside the mask in neither) over the edges t_0, ..., t_{T-1}, 1, 2, 3
    (``checks.pxap_edges``), every threshold in one pass, values compared in float64.
    maps (B, H, W) float, masks and ignore (B, H, W) bool (ignore may be None), thresholds (T,)
    -> (mask histograms, other histograms), each (B, T + 2) int64."""
    _require_extension()
    check_maps(maps)
    check_pixel_masks(maps, masks, ignore)
    return _C.pxap_histograms(maps, masks, ignore, pxap_edges(thresholds).to(maps.device))
