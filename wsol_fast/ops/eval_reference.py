"""Evaluation ops in plain PyTorch: the definition of correct for the ``wsol_fast._C`` extension.

Normalizations (METHOD.md §5). Every map is normalized on its own; maps are ``(B, H, W)`` of
any float dtype, computed in float32 (float64 for float64 maps) and returned as float32.
Each normalization is ``clamp(numerator / denominator, 0, 1)`` per map, by true division, and
where a map's denominator is ``<= 0`` (constant maps, all-zero maps, maps whose percentile is
0) the result is that ratio's limit for a denominator falling to 0+: 1 where the numerator is
> 0, else 0. So no map ever yields NaN or Inf; constant and all-zero maps give zeros under
min-max, max, PaS and IVR, and a constant positive map gives ones under max and percentile-max.

Box extraction (METHOD.md §6): a map's mask at threshold t is ``map > t`` compared in the
maps' dtype (so a Python float threshold acts as ``torch``/``numpy`` scalars do); components
are 8-connected; boxes are int64 ``(x0, y0, x1, y1)`` with exclusive maxima.
"""
import math
from typing import NamedTuple

import torch

from .checks import (PERCENTILE, as_thresholds, check_maps, check_percent, check_pixel_masks, empty_is_full,
                     pxap_edges)
from .quantize import wsolevaluation_levels

NORMALIZATION_SPECS = ("minmax", "max", "percentile:P", "pas", "pas:P", "ivr:P")
_CHUNK_PIXELS = 1 << 24  # mask pixels labelled at once by a threshold sweep (bounds memory)


def _check_maps(maps: torch.Tensor) -> None:
    """``checks.check_maps``, and no NaN or Inf (found on the host)."""
    check_maps(maps)
    finite = torch.isfinite(maps).flatten(1).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten().tolist()
        shown = ", ".join(map(str, bad[:10])) + (f", ... ({len(bad)} maps)" if len(bad) > 10 else "")
        raise ValueError(f"maps: NaN or Inf in map index(es) {shown}")


def _flat(maps: torch.Tensor) -> torch.Tensor:
    """(B, H, W) -> (B, H*W) in the compute dtype (float64 for float64 maps, else float32)."""
    dtype = torch.float64 if maps.dtype == torch.float64 else torch.float32
    return maps.reshape(maps.shape[0], -1).to(dtype)


def _percentile_of_flat(flat: torch.Tensor, p: float) -> torch.Tensor:
    """numpy.percentile(method="linear") of each row of ``flat`` (B, n) -> (B,)."""
    n = flat.shape[1]
    position = (n - 1) * (p / 100)  # numpy's virtual index, in float64
    if position >= n - 1:
        return flat.amax(dim=1)
    lower = math.floor(position)
    gamma = position - lower
    below = torch.kthvalue(flat, lower + 1, dim=1).values
    if gamma == 0:
        return below
    above = torch.kthvalue(flat, lower + 2, dim=1).values
    difference = above - below
    if gamma < 0.5:  # numpy's _lerp: the formula that is exact at the nearer end
        return below + difference * gamma
    return above - difference * (1 - gamma)


def percentile(maps: torch.Tensor, p: float) -> torch.Tensor:
    """p-th percentile (p in [0, 100]) of each map's H*W values, numpy.percentile's default
    "linear" method (index p/100*(n-1), lerp between order statistics, numpy's rounding).
    maps (B, H, W) float -> (B,) float32 (float64 for float64 maps)."""
    _check_maps(maps)
    return _percentile_of_flat(_flat(maps), check_percent(p))


def _clamped_ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """clamp(numerator / denominator, 0, 1) per row; rows with denominator <= 0 get the
    limit for denominator -> 0+: 1 where numerator > 0, else 0. (B, n), (B,) -> (B, n)."""
    positive = (denominator > 0).unsqueeze(1)
    safe = torch.where(positive, denominator.unsqueeze(1), torch.ones_like(denominator).unsqueeze(1))
    ratio = (numerator / safe).clamp_(0, 1)
    return torch.where(positive, ratio, (numerator > 0).to(ratio.dtype))


def _minmax_flat(flat: torch.Tensor) -> torch.Tensor:
    low = flat.amin(dim=1, keepdim=True)
    return _clamped_ratio(flat - low, flat.amax(dim=1) - low.squeeze(1))


def _as_maps(flat: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    return flat.to(torch.float32).reshape(maps.shape)


def minmax_normalize(maps: torch.Tensor) -> torch.Tensor:
    """(M - min) / (max - min) per map (BAS, CAM). (B, H, W) float -> float32 in [0, 1]."""
    _check_maps(maps)
    return _as_maps(_minmax_flat(_flat(maps)), maps)


def max_normalize(maps: torch.Tensor) -> torch.Tensor:
    """clamp(M / max, 0, 1) per map. (B, H, W) float -> float32 in [0, 1]."""
    _check_maps(maps)
    flat = _flat(maps)
    return _as_maps(_clamped_ratio(flat, flat.amax(dim=1)), maps)


def percentile_max_normalize(maps: torch.Tensor, p: float = PERCENTILE) -> torch.Tensor:
    """The paper's normalization: clamp(M / P_p(M), 0, 1) per map, no min subtraction
    (p = 100 is max normalization). (B, H, W) float -> float32 in [0, 1]."""
    _check_maps(maps)
    flat = _flat(maps)
    return _as_maps(_clamped_ratio(flat, _percentile_of_flat(flat, check_percent(p))), maps)


def pas_normalize(maps: torch.Tensor, p: float = 90.0) -> torch.Tensor:
    """PaS: min-max, then clamp(N / P_p(N), 0, 1) with N the min-maxed map.
    (B, H, W) float -> float32 in [0, 1]."""
    _check_maps(maps)
    scaled = _minmax_flat(_flat(maps))
    return _as_maps(_clamped_ratio(scaled, _percentile_of_flat(scaled, check_percent(p))), maps)


def ivr_normalize(maps: torch.Tensor, p: float) -> torch.Tensor:
    """IVR: max(0, M - P_p(M)) / (max(M) - P_p(M)) per map, i.e. the shifted map divided by
    its own maximum (the IVR paper's and the wsolevaluation-style code's denominator).
    (B, H, W) float -> float32 in [0, 1]."""
    _check_maps(maps)
    flat = _flat(maps)
    level = _percentile_of_flat(flat, check_percent(p))
    shifted = (flat - level.unsqueeze(1)).clamp_(min=0)
    return _as_maps(_clamped_ratio(shifted, flat.amax(dim=1) - level), maps)


def parse_normalization(spec: str) -> tuple[str, float | None]:
    """``"minmax" | "max" | "percentile:P" | "pas" | "pas:P" | "ivr:P"`` -> (name, P or None)."""
    name, _, argument = str(spec).strip().partition(":")
    needs_p = {"minmax": False, "max": False, "percentile": True, "pas": None, "ivr": True}
    expected = f"expected one of {', '.join(NORMALIZATION_SPECS)} with P in [0, 100]"
    if name not in needs_p:
        raise ValueError(f"normalization {spec!r}: unknown name {name!r}; {expected}")
    if not argument:
        if needs_p[name]:
            raise ValueError(f"normalization {spec!r}: {name} needs a percentile; {expected}")
        return name, None
    if needs_p[name] is False:
        raise ValueError(f"normalization {spec!r}: {name} takes no percentile; {expected}")
    try:
        p = float(argument)
    except ValueError:
        raise ValueError(f"normalization {spec!r}: {argument!r} is not a number; {expected}") from None
    return name, check_percent(p, name=f"normalization {spec!r}: P")


def normalize(maps: torch.Tensor, spec: str) -> torch.Tensor:
    """Normalize by a spec string (see ``parse_normalization``). (B, H, W) -> float32."""
    name, p = parse_normalization(spec)
    if name == "minmax":
        return minmax_normalize(maps)
    if name == "max":
        return max_normalize(maps)
    if name == "percentile":
        return percentile_max_normalize(maps, p)
    if name == "pas":
        return pas_normalize(maps, 90.0 if p is None else p)
    return ivr_normalize(maps, p)


def _check_mask(mask: torch.Tensor) -> None:
    if not isinstance(mask, torch.Tensor) or mask.ndim != 3 or mask.dtype != torch.bool:
        described = (f"{mask.dtype} tensor of shape {tuple(mask.shape)}"
                     if isinstance(mask, torch.Tensor) else type(mask).__name__)
        raise ValueError(f"mask: expected a bool tensor (B, H, W), got a {described}")


class _Runs(NamedTuple):
    """Horizontal runs of foreground pixels of masks (M, H, W), in raster order; all (R,) int64."""

    mask: torch.Tensor  # which mask
    row: torch.Tensor
    start: torch.Tensor  # first column
    end: torch.Tensor  # last column + 1
    root: torch.Tensor  # index of the first run (in raster order) of the run's component


def _run_starts(mask: torch.Tensor) -> torch.Tensor:
    """(M, H, W) bool -> (M, H, W) bool, True on the first pixel of every horizontal run."""
    starts = mask.clone()
    starts[:, :, 1:] &= ~mask[:, :, :-1]
    return starts


def _touching_runs(global_row: torch.Tensor, start: torch.Tensor, end: torch.Tensor,
                   last_row: torch.Tensor, width: int, connectivity: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs (a, b) of runs with b on the row below a that touch a: columns overlap (4-connected)
    or overlap after widening a by one pixel each side (8-connected). Runs are in raster order,
    so the runs of the row below touching a run form one contiguous index range, found by
    binary search."""
    reach = 1 if connectivity == 8 else 0
    stride = width + 2
    end_keys = global_row * stride + (end - 1)
    start_keys = global_row * stride + start
    below = (global_row + 1) * stride
    first = torch.searchsorted(end_keys, below + start - reach)
    stop = torch.searchsorted(start_keys, below + end - 1 + reach, right=True)
    count = torch.where(last_row, 0, (stop - first).clamp(min=0))
    source = torch.repeat_interleave(torch.arange(start.numel(), device=start.device), count)
    offset = torch.arange(source.numel(), device=start.device) - torch.repeat_interleave(
        torch.cumsum(count, 0) - count, count)
    return source, torch.repeat_interleave(first, count) + offset


def _union(count: int, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Connected components of the graph on ``count`` nodes with edges (a, b) -> (count,) int64
    smallest node index of each node's component. Hook every edge's two roots onto the smaller
    (scatter-min), compress the pointer chains fully, repeat until every edge joins one root."""
    parent = torch.arange(count, device=a.device)
    while True:
        root_a, root_b = parent[a], parent[b]
        if torch.equal(root_a, root_b):
            return parent
        lower = torch.minimum(root_a, root_b)
        parent.scatter_reduce_(0, root_a, lower, "amin")
        parent.scatter_reduce_(0, root_b, lower, "amin")
        while True:
            jumped = parent[parent]
            if torch.equal(jumped, parent):
                break
            parent = jumped


def _label_runs(mask: torch.Tensor, connectivity: int = 8) -> _Runs:
    """4- or 8-connected components of masks (M, H, W) bool, as labelled horizontal runs."""
    height, width = mask.shape[1:]
    first_pixels = torch.nonzero(_run_starts(mask).reshape(-1)).squeeze(1)
    last_pixels = torch.nonzero(_run_starts(mask.flip(2)).flip(2).reshape(-1)).squeeze(1)
    global_row = first_pixels // width
    start = first_pixels % width
    end = last_pixels % width + 1
    row = global_row % height
    source, target = _touching_runs(global_row, start, end, row == height - 1, width, connectivity)
    root = _union(start.numel(), source, target)
    return _Runs(global_row // height, row, start, end, root)


def connected_components(mask: torch.Tensor, connectivity: int = 8) -> torch.Tensor:
    """8- (or 4-) connected components of each mask. mask (B, H, W) bool -> labels (B, H, W)
    int64, 0 on background, and on each component 1 + the raster index (y*W + x) of its first
    pixel in raster order (computed on horizontal runs, merged by vectorized union-find)."""
    _check_mask(mask)
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity={connectivity!r}: expected 4 or 8")
    batch, height, width = mask.shape
    runs = _label_runs(mask, connectivity)
    first_pixel = runs.row * width + runs.start
    label_of_run = torch.cat([first_pixel.new_zeros(1), first_pixel[runs.root] + 1])
    runs_so_far = _run_starts(mask).reshape(-1).cumsum(0)  # 1 + run index on foreground pixels
    return torch.where(mask.reshape(-1), label_of_run[runs_so_far], 0).view(batch, height, width)


class _Components(NamedTuple):
    """One entry per component, in raster order of first pixels; all (K,) int64."""

    mask: torch.Tensor
    first_pixel: torch.Tensor  # raster index within its mask
    size: torch.Tensor
    box: torch.Tensor  # (K, 4) x0, y0, x1, y1 with exclusive maxima


def _components(mask: torch.Tensor, connectivity: int = 8) -> _Components:
    runs = _label_runs(mask, connectivity)
    width = mask.shape[2]
    count = runs.root.numel()
    roots = torch.nonzero(runs.root == torch.arange(count, device=mask.device)).squeeze(1)

    def reduce(values: torch.Tensor, how: str) -> torch.Tensor:
        slots = torch.zeros(count, dtype=torch.int64, device=mask.device)
        return slots.scatter_reduce(0, runs.root, values, how, include_self=False)[roots]

    box = torch.stack([reduce(runs.start, "amin"), runs.row[roots],
                       reduce(runs.end, "amax"), reduce(runs.row, "amax") + 1], dim=1)
    return _Components(runs.mask[roots], runs.row[roots] * width + runs.start[roots],
                       reduce(runs.end - runs.start, "sum"), box)


def _empty_box(empty: str, height: int, width: int) -> list[int]:
    return [0, 0, width, height] if empty_is_full(empty) else [0, 0, 0, 0]


def _largest_boxes_of_masks(mask: torch.Tensor, empty_box: list[int]) -> torch.Tensor:
    """mask (M, H, W) bool -> (M, 4) int64 box of the largest component (ties: the first in
    raster order), ``empty_box`` where the mask is empty."""
    masks, height, width = mask.shape
    found = _components(mask)
    # Largest size first, then the smallest first-pixel index.
    key = found.size * (height * width + 1) - found.first_pixel
    best = torch.full((masks,), -1, dtype=torch.int64, device=mask.device)
    best.scatter_reduce_(0, found.mask, key, "amax")
    chosen = key == best[found.mask]
    boxes = torch.tensor(empty_box, device=mask.device).repeat(masks, 1)
    boxes[found.mask[chosen]] = found.box[chosen]
    return boxes


def largest_component_boxes(maps: torch.Tensor, thresholds, empty: str = "full") -> torch.Tensor:
    """Box of the largest 8-connected component of ``maps > t`` for every threshold t.
    maps (B, H, W) float, thresholds float | sequence | 1-D tensor (T,) -> (B, T, 4) int64
    ``(x0, y0, x1, y1)``, exclusive maxima; equally large components go to the one whose first
    pixel comes first in raster order; an empty mask gives ``[0, 0, W, H]`` for
    ``empty="full"`` (BAS protocol) or ``[0, 0, 0, 0]`` for ``empty="zero"`` (wsolevaluation)."""
    _check_maps(maps)
    batch, height, width = maps.shape
    empty_box = _empty_box(empty, height, width)
    levels = as_thresholds(thresholds).to(device=maps.device, dtype=maps.dtype)
    per_chunk = max(1, _CHUNK_PIXELS // (batch * height * width))
    boxes = []
    for first in range(0, levels.numel(), per_chunk):
        chunk = levels[first:first + per_chunk]
        mask = maps.unsqueeze(0) > chunk.view(-1, 1, 1, 1)  # (t, B, H, W)
        found = _largest_boxes_of_masks(mask.reshape(-1, height, width), empty_box)
        boxes.append(found.view(chunk.numel(), batch, 4))
    return torch.cat(boxes).transpose(0, 1).contiguous()


def all_component_boxes(maps: torch.Tensor, threshold: float) -> list[torch.Tensor]:
    """Boxes of every 8-connected component of ``maps > threshold`` (for MaxBoxAccV2).
    maps (B, H, W) float -> B tensors (K_b, 4) int64 ``(x0, y0, x1, y1)``, exclusive maxima,
    components in raster order of their first pixel; K_b = 0 for an empty mask."""
    _check_maps(maps)
    level = as_thresholds(threshold)
    if level.numel() != 1:
        raise ValueError(f"threshold: expected one value, got {level.numel()}")
    found = _components(maps > level.to(device=maps.device, dtype=maps.dtype))
    per_map = torch.bincount(found.mask, minlength=maps.shape[0])
    return list(torch.split(found.box, per_map.tolist()))


# ---- wsolevaluation's contour rule (cv2.findContours RETR_TREE, the largest by contourArea) ----

def _framed(levels: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """Foreground ``levels > step`` of one map (H, W) uint8 at steps (U,) -> (U, H + 2, W + 2)
    bool with OpenCV's frame of background pixels."""
    return torch.nn.functional.pad(levels.unsqueeze(0).long() > steps.view(-1, 1, 1), (1, 1, 1, 1))


def _not_outside(foreground: torch.Tensor) -> torch.Tensor:
    """Framed masks (U, H', W') -> pixels not 4-connected to the frame through background: the
    foreground and its holes. The frame's component is the one labelled 1 (first pixel 0)."""
    return connected_components(~foreground, connectivity=4) != 1


def _largest_contour_box(foreground: torch.Tensor) -> list[int]:
    """Box of the largest contour (by area, ties to the later first pixel) of one framed mask
    (H', W') bool. A contour's area counts the unit squares between pixel centres with 4
    corners inside it once and those with 3 once half; the largest contour encloses an
    8-connected component of ``_not_outside`` (csrc/contours_cpu.cpp says why)."""
    enclosed = _not_outside(foreground.unsqueeze(0))
    if not bool(enclosed.any()):
        return [0, 0, 0, 0]
    labels = connected_components(enclosed)[0]
    corners = torch.stack([labels[:-1, :-1], labels[:-1, 1:], labels[1:, :-1], labels[1:, 1:]])
    inside = (corners > 0).sum(dim=0)
    halves = (inside >= 3).long() + (inside == 4).long()
    area = torch.zeros(labels.numel() + 1, dtype=torch.int64).index_add_(
        0, corners.amax(dim=0).flatten(), halves.flatten())
    present = torch.unique(labels[labels > 0])
    key = area[present] * (labels.numel() + 1) + present  # largest area, then latest first pixel
    ys, xs = torch.nonzero(labels == present[int(key.argmax())], as_tuple=True)
    return _contour_box(int(xs.min()) - 1, int(ys.min()) - 1, int(xs.max()) - 1, int(ys.max()) - 1,
                        foreground.shape)


def _contour_box(x0: int, y0: int, x1: int, y1: int, framed_shape) -> list[int]:
    """wsolevaluation's box of a contour whose border pixels span x0..x1, y0..y1 (image
    coordinates): x1 = min(x + w, W - 1), y1 = min(y + h, H - 1)."""
    height, width = framed_shape[0] - 2, framed_shape[1] - 2
    return [x0, y0, min(x1 + 1, width - 1), min(y1 + 1, height - 1)]


def largest_contour_boxes(maps: torch.Tensor, thresholds) -> torch.Tensor:
    """wsolevaluation's box at every threshold: of the quantized map (``quantize``), the
    contour of largest ``cv2.contourArea`` (the first listed on ties), its ``cv2.boundingRect``
    as ``x0, y0, min(x + w, W - 1), min(y + h, H - 1)``; ``[0, 0, 0, 0]`` without contours.
    maps (B, H, W) float in [0, 1], thresholds (T,) -> (B, T, 4) int64. One labelling per map
    and distinct integer threshold."""
    levels, steps = wsolevaluation_levels(maps, thresholds)
    boxes = torch.zeros(*steps.shape, 4, dtype=torch.int64)
    for b in range(levels.shape[0]):
        distinct, slot = torch.unique(steps[b], return_inverse=True)
        framed = _framed(levels[b], distinct)
        found = torch.tensor([_largest_contour_box(mask) for mask in framed], dtype=torch.int64)
        boxes[b] = found[slot]
    return boxes


def all_contour_boxes(maps: torch.Tensor, threshold: float) -> list[torch.Tensor]:
    """Every contour's box at one threshold (MaxBoxAccV2): each 8-connected foreground
    component's (its outer contour) and each hole's (a 4-connected background component not
    reaching the frame; its contour runs through the foreground pixels around it, one pixel
    outside it), in wsolevaluation's box convention. maps (B, H, W) float in [0, 1] -> B
    tensors (K_b, 4) int64; K_b = 0 without contours."""
    levels, steps = wsolevaluation_levels(maps, threshold)
    result = []
    for b in range(levels.shape[0]):
        foreground = _framed(levels[b], steps[b])
        outer = _components(foreground)
        holes = _components(~foreground, connectivity=4)
        inner = holes.first_pixel != 0  # not the frame's component
        # _components boxes: framed coordinates, exclusive maxima = inclusive image maxima + 2.
        spans = torch.cat([outer.box - torch.tensor([1, 1, 2, 2]),
                           holes.box[inner] - torch.tensor([2, 2, 1, 1])])
        result.append(torch.tensor([_contour_box(*span, foreground.shape[1:]) for span in spans.tolist()],
                                   dtype=torch.int64).reshape(-1, 4))
    return result


# ---- PxAP histograms (wsolevaluation's MaskEvaluator) ----

def pxap_histograms(maps: torch.Tensor, masks: torch.Tensor, ignore: torch.Tensor | None,
                    thresholds) -> tuple[torch.Tensor, torch.Tensor]:
    """numpy.histogram of each map's values at its mask pixels and at its other pixels, over
    the edges ``pxap_edges(thresholds)`` = t_0, ..., t_{T-1}, 1, 2, 3: bins [e_i, e_{i+1}), the
    last closed, values compared exactly in float64, values outside [e_0, 3] in no bin. Pixels
    of ``ignore`` outside the mask count in neither (wsolevaluation's ignore region is the
    ignore box minus the foreground). Brute force: one count of ``value >= edge`` per edge.
    maps (B, H, W) float, masks (B, H, W) bool, ignore (B, H, W) bool | None, thresholds (T,)
    -> (mask histograms, other histograms), each (B, T + 2) int64."""
    _check_maps(maps)
    check_pixel_masks(maps, masks, ignore)
    edges = pxap_edges(thresholds).tolist()
    values = maps.to(torch.float64)  # exact for every float dtype
    others = ~masks if ignore is None else ~(masks | ignore)

    def histograms(pixels: torch.Tensor) -> torch.Tensor:
        at_least = torch.stack([((values >= edge) & pixels).sum(dim=(1, 2)) for edge in edges], dim=1)
        above_last = ((values > edges[-1]) & pixels).sum(dim=(1, 2))
        upper = torch.cat([at_least[:, 1:-1], above_last.unsqueeze(1)], dim=1)
        return at_least[:, :-1] - upper

    return histograms(masks), histograms(others)
