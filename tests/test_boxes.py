"""Connected components and boxes (METHOD.md §6) against scipy.ndimage.label."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from wsol_fast.ops import eval_reference as reference
from wsol_fast.ops import evaluation

EIGHT_CONNECTED = np.ones((3, 3), dtype=int)


def smooth_maps(count, height, width, sigma, seed):
    """Blob-shaped maps: Gaussian-smoothed noise, min-maxed to [0, 1], float32."""
    noise = np.random.default_rng(seed).standard_normal((count, height, width))
    fields = np.stack([ndimage.gaussian_filter(n, sigma, mode="reflect") for n in noise])
    low = fields.min(axis=(1, 2), keepdims=True)
    high = fields.max(axis=(1, 2), keepdims=True)
    return torch.from_numpy((fields - low) / (high - low)).float()


def scipy_labels(mask):
    """One mask (H, W) bool -> (scipy's labels (H, W), first raster index of each label 1..K)."""
    labels, count = ndimage.label(mask, structure=EIGHT_CONNECTED)
    first = np.full(count + 1, mask.size)
    np.minimum.at(first, labels.ravel(), np.arange(mask.size))
    return labels, first


def scipy_components(mask):
    """One mask (H, W) bool -> list of (first raster index, size, box with exclusive maxima),
    in raster order of first pixels."""
    labels, first = scipy_labels(mask)
    sizes = np.bincount(labels.ravel(), minlength=len(first))
    found = [(int(first[k]), int(sizes[k]), [cols.start, rows.start, cols.stop, rows.stop])
             for k, (rows, cols) in enumerate(ndimage.find_objects(labels), start=1)]
    return sorted(found)


def expected_labels(mask):
    labels, first = scipy_labels(mask)
    return np.where(labels > 0, first[labels] + 1, 0)


def expected_largest_box(mask, empty):
    components = scipy_components(mask)
    if not components:
        return [0, 0, mask.shape[1], mask.shape[0]] if empty == "full" else [0, 0, 0, 0]
    return max(components, key=lambda c: (c[1], -c[0]))[2]


def random_masks(shape, density, seed):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < density


@pytest.mark.parametrize("shape", [(3, 17, 23), (2, 1, 9), (2, 9, 1), (1, 1, 1), (2, 64, 61)])
@pytest.mark.parametrize("density", [0.05, 0.4, 0.6, 0.95])
def test_labels_match_scipy_on_random_masks(shape, density):
    mask = random_masks(shape, density, seed=sum(shape) + int(density * 100))
    labels = reference.connected_components(mask)
    assert labels.dtype == torch.int64 and labels.shape == shape
    for m, l in zip(mask.numpy(), labels.numpy()):
        np.testing.assert_array_equal(l, expected_labels(m))


def test_labels_of_a_non_contiguous_mask():
    mask = random_masks((2, 31, 40), 0.5, seed=3)[:, ::2, 1::3].transpose(1, 2)
    assert not mask.is_contiguous()
    labels = reference.connected_components(mask)
    for m, l in zip(mask.numpy(), labels.numpy()):
        np.testing.assert_array_equal(l, expected_labels(m))


def test_labels_match_scipy_on_blobs_at_many_thresholds():
    maps = smooth_maps(4, 40, 53, sigma=3, seed=1)
    for threshold in np.linspace(0.05, 0.95, 19):
        mask = maps > threshold
        labels = reference.connected_components(mask)
        for m, l in zip(mask.numpy(), labels.numpy()):
            np.testing.assert_array_equal(l, expected_labels(m))


def spiral(size):
    """A one-pixel-wide square spiral: one component whose path is ~size^2 / 2 pixels long."""
    grid = np.zeros((size, size), dtype=bool)
    y = x = 0
    grid[0, 0] = True
    directions = [(0, 1), (1, 0), (0, -1), (-1, 0)]
    heading = turns = 0
    while turns < 4:
        dy, dx = directions[heading]
        ahead, beyond = (y + dy, x + dx), (y + 2 * dy, x + 2 * dx)
        inside = all(0 <= v < size for v in ahead)
        if inside and not grid[ahead] and not (all(0 <= v < size for v in beyond) and grid[beyond]):
            y, x = ahead
            grid[ahead] = True
            turns = 0
        else:
            heading, turns = (heading + 1) % 4, turns + 1
    return grid


def test_spiral_is_one_component():
    grid = spiral(61)
    assert ndimage.label(grid, structure=EIGHT_CONNECTED)[1] == 1
    labels = reference.connected_components(torch.from_numpy(grid)[None])
    assert set(labels.unique().tolist()) == {0, 1}
    # with the innermost arm cut off, scipy and we agree on the two pieces
    cut = grid.copy()
    cut[30, 25:36] = False
    np.testing.assert_array_equal(reference.connected_components(torch.from_numpy(cut)[None])[0].numpy(),
                                  expected_labels(cut))


def test_known_blob_box():
    maps = torch.zeros(1, 8, 10)
    maps[0, 2:5, 3:7] = 1.0  # rows 2-4, columns 3-6
    assert reference.largest_component_boxes(maps, 0.5).tolist() == [[[3, 2, 7, 5]]]
    assert [b.tolist() for b in reference.all_component_boxes(maps, 0.5)] == [[[3, 2, 7, 5]]]


def test_ties_go_to_the_first_component_in_raster_order():
    maps = torch.zeros(2, 6, 12)
    maps[0, 0:2, 9:11] = 1.0  # first pixel (0, 9)
    maps[0, 1:3, 0:2] = 1.0  # same size, first pixel (1, 0): later
    maps[1] = maps[0].flip(0)  # now the left square starts first
    boxes = reference.largest_component_boxes(maps, 0.5)
    assert boxes[:, 0].tolist() == [[9, 0, 11, 2], [0, 3, 2, 5]]
    maps[0, 3, 0] = 1.0  # the later component grows by one pixel: size beats order
    boxes = reference.largest_component_boxes(maps, 0.5)
    assert boxes[:, 0].tolist() == [[0, 1, 2, 4], [0, 3, 2, 5]]


@pytest.mark.parametrize("empty", ["full", "zero"])
def test_largest_boxes_match_scipy_on_blobs_and_noise(empty):
    maps = torch.cat([smooth_maps(3, 37, 45, sigma=2.5, seed=7),
                      torch.rand(2, 37, 45, generator=torch.Generator().manual_seed(3))])
    thresholds = np.arange(0, 1, 0.01)
    boxes = reference.largest_component_boxes(maps, thresholds, empty=empty)
    assert boxes.shape == (5, 100, 4) and boxes.dtype == torch.int64
    for b, m in enumerate(maps.numpy()):
        for t, threshold in enumerate(thresholds):
            mask = m > np.float32(threshold)
            assert boxes[b, t].tolist() == expected_largest_box(mask, empty), (b, threshold)


def test_all_component_boxes_match_scipy():
    maps = torch.cat([smooth_maps(3, 33, 29, sigma=2, seed=2),
                      torch.rand(1, 33, 29, generator=torch.Generator().manual_seed(4))])
    for threshold in (0.1, 0.35, 0.6, 0.85, 1.0):
        found = reference.all_component_boxes(maps, threshold)
        assert len(found) == len(maps)
        for boxes, m in zip(found, maps.numpy()):
            expected = [c[2] for c in scipy_components(m > np.float32(threshold))]
            assert boxes.dtype == torch.int64 and boxes.reshape(-1, 4).tolist() == expected


def test_constant_and_zero_maps_in_both_empty_modes():
    maps = torch.stack([torch.zeros(5, 7), torch.full((5, 7), 0.5)])
    full = reference.largest_component_boxes(maps, [0.0, 0.3, 0.5, 0.9], empty="full")
    zero = reference.largest_component_boxes(maps, [0.0, 0.3, 0.5, 0.9], empty="zero")
    whole = [0, 0, 7, 5]
    assert full.tolist() == [[whole] * 4, [whole] * 4]  # masks are empty or the whole map
    assert zero.tolist() == [[[0, 0, 0, 0]] * 4, [whole, whole, [0, 0, 0, 0], [0, 0, 0, 0]]]
    assert [b.tolist() for b in reference.all_component_boxes(maps, 0.5)] == [[], []]


def test_thresholds_as_float_list_or_tensor_agree():
    maps = smooth_maps(2, 21, 19, sigma=2, seed=5)
    levels = [0.2, 0.45, 0.7]
    from_list = reference.largest_component_boxes(maps, levels)
    assert torch.equal(from_list, reference.largest_component_boxes(maps, torch.tensor(levels)))
    assert torch.equal(from_list, reference.largest_component_boxes(maps, np.array(levels)))
    for t, level in enumerate(levels):
        assert torch.equal(from_list[:, t:t + 1], reference.largest_component_boxes(maps, level))


def test_non_contiguous_maps_give_the_same_boxes():
    maps = smooth_maps(3, 24, 35, sigma=2, seed=12).transpose(1, 2)[:, 1::2]
    assert not maps.is_contiguous()
    assert torch.equal(reference.largest_component_boxes(maps, [0.25, 0.5, 0.75]),
                       reference.largest_component_boxes(maps.contiguous(), [0.25, 0.5, 0.75]))
    for ours, expected in zip(reference.all_component_boxes(maps, 0.5),
                              reference.all_component_boxes(maps.contiguous(), 0.5)):
        assert torch.equal(ours, expected)


def test_threshold_is_compared_in_the_maps_dtype():
    maps = torch.full((1, 3, 3), 0.15)  # float32(0.15) > 0.15 in float64, not in float32
    assert reference.largest_component_boxes(maps, 0.15, empty="zero").tolist() == [[[0, 0, 0, 0]]]


def test_chunked_sweeps_and_single_maps_agree_with_one_batch(monkeypatch):
    maps = smooth_maps(6, 30, 30, sigma=2, seed=9)
    levels = np.linspace(0.1, 0.9, 7)
    together = reference.largest_component_boxes(maps, levels)
    alone = torch.cat([reference.largest_component_boxes(m[None], levels) for m in maps])
    assert torch.equal(together, alone)
    monkeypatch.setattr(reference, "_CHUNK_PIXELS", 2 * maps.numel())  # 2 thresholds a chunk
    assert torch.equal(reference.largest_component_boxes(maps, levels), together)


def test_dispatch_serves_the_reference(monkeypatch):
    monkeypatch.setenv("WSOL_FAST_OPS", "reference")
    maps = smooth_maps(2, 16, 20, sigma=2, seed=6)
    assert torch.equal(evaluation.largest_component_boxes(maps, [0.2, 0.5], empty="zero"),
                       reference.largest_component_boxes(maps, [0.2, 0.5], empty="zero"))
    ours, theirs = evaluation.all_component_boxes(maps, 0.4), reference.all_component_boxes(maps, 0.4)
    assert len(ours) == len(theirs) and all(torch.equal(a, b) for a, b in zip(ours, theirs))


def test_bad_inputs_are_rejected():
    maps = torch.rand(1, 4, 4)
    with pytest.raises(ValueError, match="empty='whole'"):
        reference.largest_component_boxes(maps, 0.5, empty="whole")
    with pytest.raises(ValueError, match="bool tensor"):
        reference.connected_components(maps)
    with pytest.raises(ValueError, match="no threshold"):
        reference.largest_component_boxes(maps, [])
    with pytest.raises(ValueError, match="one value"):
        reference.all_component_boxes(maps, [0.1, 0.2])
    with pytest.raises(ValueError, match=r"map index\(es\) 0"):
        reference.largest_component_boxes(torch.full((1, 2, 2), float("nan")), 0.5)
