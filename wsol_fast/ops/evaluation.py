"""Evaluation ops through the op registry (``registry``). Signatures, shapes and definitions
are those of ``eval_reference``; the C++/CUDA extension (``ext``) serves percentile
normalization, box extraction, the threshold sweeps and the PxAP histograms wherever it is
built for the maps' device. Ops the extension does not have (the other normalizations,
all-component boxes) run the reference."""
import torch

from . import eval_reference as reference
from . import ext
from .box_iou import box_iou, max_iou_over_boxes, valid_first
from .registry import FastPath, Op


def extension_unavailable(maps: torch.Tensor, forced: bool) -> str | None:
    """Why the extension cannot serve ``maps`` (None: it can)."""
    if ext.available() and (maps.device.type == "cpu" or ext.has_cuda()):
        return None
    return (f"wsol_fast._C is not built for {maps.device.type} tensors (pip install --no-build-isolation -e .; "
            "FORCE_CUDA=1 for CUDA)")


def extension_unbuilt(tensor: torch.Tensor, forced: bool) -> str | None:
    """Why the extension cannot serve an op that it runs on the CPU for tensors of any device
    (None: it can)."""
    return None if ext.available() else "wsol_fast._C is not built (pip install --no-build-isolation -e .)"


def extension(function) -> FastPath:
    """The fast path of the extension's ``function`` (looked up in ``ext`` at each call)."""
    def call(*args, **kwargs):
        return getattr(ext, function.__name__)(*args, **kwargs)

    return FastPath("ext", call, extension_unavailable, warn=True)


# clamp(M / P_p(M), 0, 1) per map. (B, H, W) float -> float32.
percentile_max_normalize = Op("percentile_max_normalize", reference.percentile_max_normalize,
                              extension(ext.percentile_max_normalize))
# Largest 8-connected component's box of ``maps > t`` per threshold. (B, H, W) -> (B, T, 4) int64.
largest_component_boxes = Op("largest_component_boxes", reference.largest_component_boxes,
                             extension(ext.largest_component_boxes))
# numpy.histogram of the values at mask / other pixels over the PxAP edges t_0, ..., t_{T-1}, 1, 2, 3.
# (B, H, W) float, (B, H, W) bool masks and ignore -> two (B, T + 2) int64.
pxap_histograms = Op("pxap_histograms", reference.pxap_histograms, extension(ext.pxap_histograms))


def normalize(maps: torch.Tensor, spec: str) -> torch.Tensor:
    """Normalize by spec "minmax" | "max" | "percentile:P" | "pas[:P]" | "ivr:P". (B, H, W) -> float32."""
    name, p = reference.parse_normalization(spec)
    if name == "percentile":
        return percentile_max_normalize(maps, p)
    return reference.normalize(maps, spec)


def all_component_boxes(maps: torch.Tensor, threshold: float) -> list[torch.Tensor]:
    """Boxes of all 8-connected components of ``maps > threshold``: B tensors (K_b, 4) int64."""
    return reference.all_component_boxes(maps, threshold)


def _sweep_ious_in_one_pass(maps: torch.Tensor, gt, levels: torch.Tensor,
                            gt_valid=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``threshold_sweep_ious`` through the extension: every threshold in one pass."""
    padded, valid = valid_first(gt, gt_valid)
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
                                    lambda m, t: reference.largest_component_boxes(m, t, empty="zero"),
                                    reference.all_component_boxes)


def _contour_ious_in_one_pass(maps: torch.Tensor, gt, levels: torch.Tensor,
                              gt_valid=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``threshold_sweep_ious`` with the contour rule through the extension (one pass per map)."""
    padded, valid = valid_first(gt, gt_valid)
    boxes, every = ext.contour_sweep(maps, levels, padded, valid.sum(dim=1))
    return box_iou(boxes, padded, valid), every


def _contour_ious_per_threshold(maps: torch.Tensor, gt, levels: torch.Tensor,
                                gt_valid=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``threshold_sweep_ious`` with the contour rule by the reference (labelled per threshold)."""
    return _best_ious_per_threshold(maps, gt, levels, gt_valid, reference.largest_contour_boxes,
                                    reference.all_contour_boxes)


# Box rules of the sweep: the largest 8-connected component by pixel count (the BAS protocol's
# rule, and this project's default), or wsolevaluation's exact contour rule (cv2.findContours).
_THRESHOLD_SWEEPS = {
    "component": Op("threshold_sweep_ious", _sweep_ious_per_threshold,
                    FastPath("ext", _sweep_ious_in_one_pass, extension_unavailable, warn=True)),
    "contour": Op("contour_sweep_ious", _contour_ious_per_threshold,
                  FastPath("ext", _contour_ious_in_one_pass, extension_unbuilt, warn=True)),
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
