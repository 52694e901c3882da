"""wsolevaluation's contour rule (``--box-rule contour``) against OpenCV, its test oracle.

The oracle transcribes wsolevaluation's ``compute_bboxes_from_scoremaps``: the map quantized by
``(scoremap * 255).astype(np.uint8)``, ``cv2.threshold(..., int(t * max), 255, THRESH_BINARY)``,
``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)``, the first contour of largest
``cv2.contourArea`` (every contour for MaxBoxAccV2), ``cv2.boundingRect`` as
``x, y, min(x + w, W - 1), min(y + h, H - 1)`` and ``[0, 0, 0, 0]`` without contours. The
extension's one-pass sweep and the reference must give the same box at every threshold, and
the same best IoU over every contour."""
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import cv2
import numpy as np
import pytest
import torch
from scipy import ndimage

from wsol_fast import metrics
from wsol_fast.ops import eval_reference, ext

KINDS = ("smooth", "textured", "thin lines", "ties", "all equal", "few levels", "rings")


class Oracle:
    """wsolevaluation's boxes of one float map: ``largest(t)`` (1, 4) and ``every(t)`` (K, 4) int
    arrays at threshold t. Equal integer thresholds give equal masks, so each is traced once."""

    def __init__(self, scoremap: np.ndarray):
        self.height, self.width = scoremap.shape
        self.image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
        self.peak = np.max(self.image)  # np.uint8: t * peak is float64, as in wsolevaluation
        self.traced = {}
        self.best = {}

    def _trace(self, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        level = int(threshold * self.peak)
        if level not in self.traced:
            _, mask = cv2.threshold(src=self.image, thresh=level, maxval=255, type=cv2.THRESH_BINARY)
            contours = cv2.findContours(image=mask, mode=cv2.RETR_TREE, method=cv2.CHAIN_APPROX_SIMPLE)[0]
            if len(contours) == 0:
                self.traced[level] = (np.zeros((1, 4), dtype=np.int64),) * 2
            else:
                x, y, w, h = cv2.boundingRect(max(contours, key=cv2.contourArea))
                largest = np.array([[x, y, min(x + w, self.width - 1), min(y + h, self.height - 1)]])
                self.traced[level] = (largest, self._boxes(contours))
        return self.traced[level]

    def _boxes(self, contours) -> np.ndarray:
        rects = np.array([cv2.boundingRect(contour) for contour in contours], dtype=np.int64)
        return np.stack([rects[:, 0], rects[:, 1], np.minimum(rects[:, 0] + rects[:, 2], self.width - 1),
                         np.minimum(rects[:, 1] + rects[:, 3], self.height - 1)], axis=1)

    def largest(self, threshold: float) -> np.ndarray:
        return self._trace(threshold)[0]

    def every(self, threshold: float) -> np.ndarray:
        return self._trace(threshold)[1]

    def best_iou(self, threshold: float, gt: np.ndarray) -> float:
        """Best IoU over every contour's box (MaxBoxAccV2), for one ``gt`` per oracle."""
        level = int(threshold * self.peak)
        if level not in self.best:
            self.best[level] = oracle_best_iou(self.every(threshold), gt)
        return self.best[level]


def oracle_best_iou(boxes: np.ndarray, gt: np.ndarray) -> float:
    """wsolevaluation's calculate_multiple_iou ("+1" areas), best over boxes and GT boxes."""
    x0 = np.maximum(boxes[:, None, 0], gt[None, :, 0])
    y0 = np.maximum(boxes[:, None, 1], gt[None, :, 1])
    x1 = np.minimum(boxes[:, None, 2], gt[None, :, 2])
    y1 = np.minimum(boxes[:, None, 3], gt[None, :, 3])
    inter = np.maximum(0, x1 - x0 + 1) * np.maximum(0, y1 - y0 + 1)
    area_box = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    area_gt = (gt[:, 2] - gt[:, 0] + 1) * (gt[:, 3] - gt[:, 1] + 1)
    return float((inter / (area_box[:, None] + area_gt[None, :] - inter)).max())


def random_map(kind: str, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(height, width) float32 in [0, 1] of one kind."""
    if kind == "smooth":
        values = ndimage.gaussian_filter(rng.random((height, width)), rng.uniform(0.7, 4.0))
    elif kind == "textured":
        values = rng.random((height, width))
    elif kind == "thin lines":  # random 8-connected walks of width one, values varying along them
        values = np.zeros((height, width))
        for _ in range(rng.integers(1, 6)):
            y, x = rng.integers(0, height), rng.integers(0, width)
            for _ in range(rng.integers(3, 40)):
                values[y, x] = rng.random()
                y = int(np.clip(y + rng.integers(-1, 2), 0, height - 1))
                x = int(np.clip(x + rng.integers(-1, 2), 0, width - 1))
    elif kind == "ties":  # equal squares of one value: equal contour areas
        values = np.zeros((height, width))
        side = int(rng.integers(1, max(2, min(height, width) // 3)))
        for _ in range(rng.integers(2, 5)):
            y, x = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
            values[y:y + side, x:x + side] = 0.75
    elif kind == "all equal":
        values = np.full((height, width), rng.choice([0.0, 0.3, 1.0]))
    elif kind == "few levels":
        values = rng.integers(0, 3, (height, width)) / 2.0
    else:  # rings: square and diamond outlines, with holes inside
        values = rng.random((height, width)) * 0.2
        for _ in range(rng.integers(1, 4)):
            cy, cx, r = rng.integers(0, height), rng.integers(0, width), int(rng.integers(1, 6))
            yy, xx = np.ogrid[:height, :width]
            distance = np.maximum(abs(yy - cy), abs(xx - cx)) if rng.random() < 0.5 else abs(yy - cy) + abs(xx - cx)
            values[distance == r] = rng.uniform(0.5, 1.0)
    top = values.max()
    return (values / top if top > 1 else values).astype(np.float32)


def random_maps(count: int, seed: int, max_side: int = 40):
    """count maps of every kind in turn, sides in [1, max_side], with 1 to 3 GT boxes each."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        height, width = (int(side) for side in rng.integers(1, max_side + 1, 2))
        scoremap = random_map(KINDS[index % len(KINDS)], rng, height, width)
        corners = rng.integers(0, [width, height, width, height], (int(rng.integers(1, 4)), 4))
        gt = np.concatenate([np.minimum(corners[:, :2], corners[:, 2:]), np.maximum(corners[:, :2], corners[:, 2:])], 1)
        yield KINDS[index % len(KINDS)], scoremap, gt.astype(np.float64)


def assert_extension_equals_opencv(maps: int, steps: tuple[int, ...], seed: int) -> None:
    for kind, scoremap, gt in random_maps(maps, seed):
        oracle = Oracle(scoremap)
        for count in steps:
            thresholds = np.arange(0, 1, 1 / count)
            boxes, best = ext.contour_sweep(torch.from_numpy(scoremap)[None], thresholds, torch.from_numpy(gt)[None])
            expected = np.concatenate([oracle.largest(t) for t in thresholds])
            assert np.array_equal(boxes[0].numpy(), expected), (kind, scoremap.shape, count)
            expected_iou = np.array([oracle.best_iou(t, gt) for t in thresholds])
            assert np.array_equal(best[0].numpy(), expected_iou), (kind, scoremap.shape, count)


def test_extension_equals_opencv_on_every_kind_of_map():
    assert_extension_equals_opencv(maps=700, steps=(100,), seed=0)


def check_chunk_of_maps(chunk: int, chunks: int) -> None:
    """One process's share of the 10,000 maps (its own seed)."""
    torch.set_num_threads(1)
    assert_extension_equals_opencv(maps=-(-10_000 // chunks), steps=(100, 1000), seed=100 + chunk)


@pytest.mark.slow
def test_extension_equals_opencv_on_ten_thousand_maps_at_100_and_1000_thresholds():
    chunks = max(1, min(4, os.cpu_count() or 1))
    with ProcessPoolExecutor(chunks, mp_context=multiprocessing.get_context("spawn")) as pool:
        for done in pool.map(check_chunk_of_maps, range(chunks), [chunks] * chunks):
            assert done is None  # a mismatch raises in its process and again here


def test_reference_equals_opencv():
    thresholds = np.arange(0, 1, 0.05)
    for kind, scoremap, gt in random_maps(140, seed=2, max_side=24):
        maps = torch.from_numpy(scoremap)[None]
        oracle = Oracle(scoremap)
        largest = eval_reference.largest_contour_boxes(maps, thresholds)[0].numpy()
        assert np.array_equal(largest, np.concatenate([oracle.largest(t) for t in thresholds])), kind
        for threshold in thresholds:
            expected = oracle.every(threshold)
            found = eval_reference.all_contour_boxes(maps, threshold)[0].numpy()
            found = found if len(found) else np.zeros((1, 4), dtype=np.int64)
            assert sorted(map(tuple, found)) == sorted(map(tuple, expected)), (kind, threshold)


def test_the_largest_contour_is_not_the_largest_component():
    """A 12-pixel line encloses no area, a 2x2 block one unit square: the contour rule boxes the
    block, the component rule (pixel count) the line."""
    scoremap = torch.zeros(1, 8, 16)
    scoremap[0, 1, 2:14] = 1.0  # the line
    scoremap[0, 5:7, 5:7] = 1.0  # the block
    contour = eval_reference.largest_contour_boxes(scoremap, [0.5])[0, 0].tolist()
    assert contour == [5, 5, 7, 7] == ext.contour_sweep(scoremap, [0.5])[0][0, 0].tolist()
    assert eval_reference.largest_component_boxes(scoremap, [0.5])[0, 0].tolist() == [2, 1, 14, 2]


def test_ties_go_to_the_contour_opencv_lists_first():
    """Equal areas: OpenCV lists outer contours last found first, and max keeps the first."""
    scoremap = torch.zeros(1, 12, 12)
    scoremap[0, 1:4, 6:9] = 0.8  # found first in raster order
    scoremap[0, 7:10, 1:4] = 0.8
    assert ext.contour_sweep(scoremap, [0.0])[0][0, 0].tolist() == [1, 7, 4, 10]
    assert eval_reference.largest_contour_boxes(scoremap, [0.0])[0, 0].tolist() == [1, 7, 4, 10]


def test_edge_cases_of_the_quantization():
    flat = torch.full((1, 5, 7), 0.5)
    boxes, _ = ext.contour_sweep(flat, [0.0, 0.99, 1.0])
    # 0.5 * 255 -> 127; int(t * 127) = 0, 125: the whole image; 127: nothing above it.
    assert boxes[0].tolist() == [[0, 0, 6, 4], [0, 0, 6, 4], [0, 0, 0, 0]]
    assert boxes.tolist() == eval_reference.largest_contour_boxes(flat, [0.0, 0.99, 1.0]).tolist()
    zeros = torch.zeros(2, 3, 3)
    assert ext.contour_sweep(zeros, [0.0])[0].tolist() == [[[0, 0, 0, 0]]] * 2
    single = torch.zeros(1, 1, 1) + 1.0
    assert ext.contour_sweep(single, [0.0])[0].tolist() == [[[0, 0, 0, 0]]]  # one pixel: x + w = 1 > W - 1


def test_extension_equals_reference_in_every_dtype_and_threshold_order():
    generator = torch.Generator().manual_seed(3)
    maps = torch.rand(3, 13, 9, generator=generator)
    thresholds = torch.rand(17, generator=generator, dtype=torch.float64)  # unsorted
    gt = torch.tensor([[[1.0, 2.0, 8.0, 11.0]], [[0.0, 0.0, 4.0, 4.0]], [[3.0, 1.0, 7.0, 12.0]]])
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        typed = maps.to(dtype)
        boxes, best = ext.contour_sweep(typed, thresholds, gt)
        assert torch.equal(boxes, eval_reference.largest_contour_boxes(typed, thresholds)), dtype
        every = [metrics.max_iou_over_boxes([b if len(b) else torch.zeros(1, 4, dtype=torch.int64)
                                             for b in eval_reference.all_contour_boxes(typed, float(t))], gt)
                 for t in thresholds]
        assert torch.equal(best, torch.stack(every, dim=1)), dtype


@pytest.mark.parametrize("bad, culprit", [(1.5, "map 1"), (-0.1, "map 1"), (float("nan"), "map 1")])
def test_maps_outside_the_unit_range_are_refused(bad, culprit):
    maps = torch.rand(2, 4, 4)
    maps[1, 2, 3] = bad
    for run in (lambda: ext.contour_sweep(maps, [0.5]), lambda: eval_reference.largest_contour_boxes(maps, [0.5])):
        with pytest.raises(ValueError, match=culprit):
            run()


def test_sweep_ious_with_the_contour_rule_through_either_path(monkeypatch):
    generator = torch.Generator().manual_seed(4)
    maps = torch.nn.functional.avg_pool2d(torch.rand(4, 1, 30, 26, generator=generator), 5, 1, 2).squeeze(1)
    maps = (maps - maps.amin(dim=(1, 2), keepdim=True)) / (maps.amax(dim=(1, 2), keepdim=True)
                                                           - maps.amin(dim=(1, 2), keepdim=True))
    gt = [torch.tensor([[2, 3, 20, 25]]), torch.tensor([[0, 0, 10, 10], [12, 14, 25, 29]]),
          torch.tensor([[5, 5, 6, 6]]), torch.tensor([[1, 1, 24, 28]])]
    thresholds = metrics.default_thresholds(0.05)
    fast = metrics.threshold_sweep_ious(maps, gt, thresholds, box_rule="contour")
    monkeypatch.setenv("WSOL_FAST_OPS", "reference")
    slow = metrics.threshold_sweep_ious(maps, gt, thresholds, box_rule="contour")
    assert torch.equal(fast[0], slow[0]) and torch.equal(fast[1], slow[1])
    for image, boxes in enumerate(gt):
        oracle = Oracle(maps[image].numpy())
        largest = [oracle_best_iou(oracle.largest(t), boxes.numpy()) for t in thresholds]
        assert np.array_equal(fast[0][image].numpy(), np.array(largest))
    with pytest.raises(ValueError, match="box_rule='contours'"):
        metrics.threshold_sweep_ious(maps, gt, thresholds, box_rule="contours")
