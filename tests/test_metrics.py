"""IoU and the count accumulators (METHOD.md §6)."""
import numpy as np
import pytest
import torch

from wsol_fast import metrics


def loop_iou(a, b):
    """IoU with the +1 convention, one pair of boxes, plain Python."""
    width = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    height = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    overlap = width * height
    area = lambda box: (box[2] - box[0] + 1) * (box[3] - box[1] + 1)  # noqa: E731
    return overlap / (area(a) + area(b) - overlap)


def random_boxes(generator, count, size=50):
    corners = torch.randint(0, size, (count, 2, 2), generator=generator)
    low, high = corners.min(dim=1).values, corners.max(dim=1).values
    return torch.cat([low, high], dim=1)  # x0, y0, x1, y1


def test_known_iou():
    iou = metrics.box_iou(torch.tensor([[1, 2, 5, 6]]), [torch.tensor([[3, 1, 4, 5]])])
    assert iou.tolist() == pytest.approx([8 / 27], abs=1e-15)
    swapped = metrics.box_iou(torch.tensor([[3, 1, 4, 5]]), [torch.tensor([[1, 2, 5, 6]])])
    assert swapped.item() == pytest.approx(8 / 27)
    apart = metrics.box_iou(torch.tensor([[0, 0, 2, 2], [4, 4, 6, 6]]),
                            torch.tensor([[[3, 3, 9, 9]], [[4, 4, 6, 6]]]))
    assert apart.tolist() == [0.0, 1.0]


def test_vectorized_iou_matches_a_loop_in_every_form():
    generator = torch.Generator().manual_seed(0)
    counts = [1, 3, 2, 5, 1, 4]
    gt = [random_boxes(generator, k) for k in counts]
    shift = 0.5 * torch.rand(len(counts), 1, generator=generator)  # float boxes too
    pred = random_boxes(generator, len(counts)).double() + shift
    swept = torch.stack([random_boxes(generator, 7) for _ in counts])  # (N, T, 4)
    expected = [max(loop_iou(pred[i].tolist(), g.tolist()) for g in gt[i]) for i in range(len(counts))]
    expected_swept = [[max(loop_iou(p.tolist(), g.tolist()) for g in gt[i]) for p in swept[i]]
                      for i in range(len(counts))]
    padded = torch.zeros(len(counts), max(counts), 4, dtype=torch.int64)
    valid = torch.zeros(len(counts), max(counts), dtype=torch.bool)
    for i, boxes in enumerate(gt):
        padded[i, :len(boxes)], valid[i, :len(boxes)] = boxes, True
    padded[~valid] = torch.tensor([0, 0, 49, 49])  # padding must not count
    for form in ((gt,), (padded, valid)):
        np.testing.assert_allclose(metrics.box_iou(pred, *form).numpy(), expected, rtol=1e-12)
        ours = metrics.box_iou(swept, *form)
        assert ours.shape == (len(counts), 7)
        np.testing.assert_allclose(ours.numpy(), expected_swept, rtol=1e-12)


def test_max_iou_over_boxes_matches_a_loop():
    generator = torch.Generator().manual_seed(1)
    gt = [random_boxes(generator, k) for k in (2, 1, 3, 1)]
    pred = [random_boxes(generator, k) for k in (3, 0, 1, 4)]
    expected = [max((loop_iou(p.tolist(), g.tolist()) for p in pred[i] for g in gt[i]), default=0.0)
                for i in range(4)]
    np.testing.assert_allclose(metrics.max_iou_over_boxes(pred, gt).numpy(), expected, rtol=1e-12)


def test_bad_boxes_are_rejected():
    with pytest.raises(ValueError, match=r"pred: box at index \[1\]"):
        metrics.box_iou(torch.tensor([[0, 0, 1, 1], [3, 0, 2, 1]]), [torch.ones(1, 4)] * 2)
    with pytest.raises(ValueError, match=r"image index\(es\) \[1\] have no box"):
        metrics.box_iou(torch.zeros(2, 4), [torch.ones(1, 4), torch.zeros(0, 4)])
    with pytest.raises(ValueError, match="2 images but gt has 3"):
        metrics.box_iou(torch.zeros(2, 4), torch.zeros(3, 1, 4))


def test_threshold_sweep_ious_on_a_known_blob():
    maps = torch.zeros(1, 10, 12)
    maps[0, 2:5, 3:7] = 0.8  # box [3, 2, 7, 5]
    maps[0, 7, 9:11] = 0.4  # a second, smaller component: box [9, 7, 11, 8]
    gt = [torch.tensor([[3, 2, 7, 5], [9, 7, 11, 8]])]
    largest, every = metrics.threshold_sweep_ious(maps, gt, [0.3, 0.5, 0.9])
    assert largest.tolist() == [[1.0, 1.0, 0.0]]  # 0.9: no pixel, box [0, 0, 0, 0]
    assert every.tolist() == [[1.0, 1.0, 0.0]]
    gt = [torch.tensor([[9, 7, 11, 8]])]
    largest, every = metrics.threshold_sweep_ious(maps, gt, [0.3])
    assert largest.item() < 0.5 and every.item() == 1.0  # only "all components" finds it


def added(first, second):
    """``first`` with ``second``'s counts added, as evaluation all-reduces ranks' state dicts."""
    other = second.state_dict()
    first.load_state_dict({name: counts + other[name] for name, counts in first.state_dict().items()})
    return first


def test_classification_counts_add_up_and_summary():
    generator = torch.Generator().manual_seed(2)
    scores = torch.randn(40, 7, generator=generator)
    labels = torch.randint(0, 7, (40,), generator=generator)
    whole = metrics.ClassificationCounts(7)
    whole.update(scores, labels)
    first, second = metrics.ClassificationCounts(7), metrics.ClassificationCounts(7)
    first.update(scores[:15], labels[:15])
    second.update(scores[15:], labels[15:])
    added(first, second)
    for name, counts in whole.state_dict().items():
        assert torch.equal(first.state_dict()[name], counts)
    ranks = (-scores).argsort(dim=1).argsort(dim=1).gather(1, labels[:, None]).squeeze(1)
    summary = whole.summary()
    assert summary["top1_cls"] == pytest.approx(100 * float((ranks == 0).float().mean()))
    assert summary["top5_cls"] == pytest.approx(100 * float((ranks < 5).float().mean()))


def test_classification_summary_by_hand():
    counts = metrics.ClassificationCounts(3)
    scores = torch.tensor([[3.0, 1, 0], [0, 2, 1], [0, 1, 2], [1, 0, 0]])  # predicts 0, 1, 2, 0
    counts.update(scores, torch.tensor([0, 1, 1, 0]))  # class 0: 2/2, class 1: 1/2, class 2: none
    summary = counts.summary()
    assert summary["top1_cls"] == pytest.approx(75.0)
    assert summary["top1_cls_class_mean"] == pytest.approx(75.0)  # mean of 100 and 50
    assert summary["top5_cls"] == summary["top5_cls_class_mean"] == pytest.approx(100.0)


def test_localization_counts_by_hand_and_added():
    labels = torch.tensor([0, 0, 0, 1, 2])
    iou = torch.tensor([0.6, 0.5, 0.9, 0.7, 0.2])  # 0.5 is not > 0.5
    top1 = torch.tensor([True, True, False, True, True])
    top5 = torch.tensor([True, True, True, True, True])
    whole = metrics.LocalizationCounts(4)
    whole.update(iou, labels, top1, top5)
    summary = whole.summary()
    assert summary["gt_known"] == pytest.approx(60.0)
    assert summary["top1_loc"] == pytest.approx(40.0)
    assert summary["top5_loc"] == pytest.approx(60.0)
    assert summary["gt_known_class_mean"] == pytest.approx(100 * (2 / 3 + 1 + 0) / 3)  # class 3 unseen
    assert summary["top1_loc_class_mean"] == pytest.approx(100 * (1 / 3 + 1 + 0) / 3)
    halves = metrics.LocalizationCounts(4)
    halves.update(iou[:2], labels[:2], top1[:2], top5[:2])
    restored = metrics.LocalizationCounts(4)
    restored.load_state_dict(whole.state_dict())
    assert restored.summary() == summary
    other = metrics.LocalizationCounts(4)
    other.update(iou[2:], labels[2:], top1[2:], top5[2:])
    assert added(halves, other).summary() == summary


def test_maxboxacc_by_hand():
    counts = metrics.MaxBoxAccCounts(thresholds=[0.1, 0.2, 0.3])
    largest = torch.tensor([[0.2, 0.6, 0.4], [0.5, 0.55, 0.8], [0.1, 0.1, 0.1], [0.9, 0.3, 0.2]],
                           dtype=torch.float64)
    every = torch.tensor([[0.2, 0.6, 0.75], [0.5, 0.71, 0.8], [0.31, 0.1, 0.1], [0.9, 0.3, 0.2]],
                         dtype=torch.float64)
    counts.update(largest, every)
    summary = counts.summary()
    # largest, IoU >= 0.5: 2, 2, 1 images at the three thresholds; ties go to the lowest
    assert summary["maxboxacc"] == pytest.approx(50.0)
    assert summary["maxboxacc_best_threshold"] == pytest.approx(0.1)
    # all components: >= 0.3: 3, 3, 2; >= 0.5: 2, 2, 2; >= 0.7: 1, 1, 2
    assert summary["maxboxaccv2_iou30"] == pytest.approx(75.0)
    assert summary["maxboxaccv2_iou50"] == pytest.approx(50.0)
    assert summary["maxboxaccv2_iou70"] == pytest.approx(50.0)
    assert summary["maxboxaccv2_iou30_best_threshold"] == pytest.approx(0.1)
    assert summary["maxboxaccv2_iou70_best_threshold"] == pytest.approx(0.3)
    assert summary["maxboxaccv2"] == pytest.approx((75.0 + 50.0 + 50.0) / 3)


def test_maxboxacc_halves_add_up_to_the_whole_and_shapes_must_match():
    generator = torch.Generator().manual_seed(3)
    largest = torch.rand(30, 100, generator=generator, dtype=torch.float64)
    every = torch.maximum(largest, torch.rand(30, 100, generator=generator, dtype=torch.float64))
    whole, first, second = (metrics.MaxBoxAccCounts() for _ in range(3))
    whole.update(largest, every)
    first.update(largest[:11], every[:11])
    second.update(largest[11:], every[11:])
    assert added(first, second).summary() == whole.summary()
    best = int((largest >= 0.5).sum(0).argmax())
    expected = 100 * float((largest[:, best] >= 0.5).double().mean())
    assert whole.summary()["maxboxacc"] == pytest.approx(expected)
    assert whole.summary()["maxboxacc_best_threshold"] == pytest.approx(np.arange(0, 1, 0.01)[best])
    with pytest.raises(ValueError, match=r"has shape \(1000, 3\), expected \(100, 3\)"):
        whole.load_state_dict(metrics.MaxBoxAccCounts(thresholds=metrics.default_thresholds(0.001)).state_dict())
    with pytest.raises(ValueError, match="expected"):
        whole.update(largest[:, :10], every[:, :10])
    with pytest.raises(ValueError, match="no image"):
        metrics.MaxBoxAccCounts().summary()
