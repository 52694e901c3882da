"""Augmentation parameters drawn vectorized from (seed, epoch, index): a function of exactly
those three, the distributions they promise, and the dataset's batch fetch equal to its items."""
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from wsol_fast.data import WSOLDataset, load_split
from wsol_fast.data.augmentation import (
    FIXED_POINT,
    RESIZED_CROP_RATIO,
    RESIZED_CROP_SCALE,
    RESIZED_CROP_TRIES,
    bas_crop_params,
    resized_crop_params,
    uniforms,
)


def test_a_sample_draws_the_same_in_any_batch_and_order():
    indices = np.array([5, 1_281_166, 0, 77, 3])
    together = uniforms(3, 2, indices, 23)
    alone = np.concatenate([uniforms(3, 2, np.array([i]), 23) for i in indices[::-1]])[::-1]
    assert np.array_equal(together, alone)
    assert not np.array_equal(together, uniforms(3, 3, indices, 23))  # another epoch
    assert not np.array_equal(together, uniforms(4, 2, indices, 23))  # another seed


def test_uniforms_are_uniform_and_independent():
    u = uniforms(0, 0, np.arange(20_000), 23)
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    counts = np.histogram(u[:, 0], bins=20, range=(0, 1))[0]
    chi2 = ((counts - 1000) ** 2 / 1000).sum()
    assert chi2 < 45  # 19 degrees of freedom: p < 0.001 above 43.8
    correlations = np.corrcoef(np.concatenate([u[:-1], u[1:]], axis=1).T)  # streams and neighbours
    off_diagonal = correlations[~np.eye(len(correlations), dtype=bool)]
    assert np.abs(off_diagonal).max() < 0.04


def test_bas_crop_positions_and_flips_cover_their_range_evenly():
    top, left, flip = bas_crop_params(1, 0, np.arange(30_000), image_size=224, resize=256)
    assert top.dtype == np.int64 and flip.dtype == bool
    for values in (top, left):
        assert values.min() == 0 and values.max() == 32
        counts = np.bincount(values, minlength=33)
        assert counts.min() > 750 and counts.max() < 1080  # 909 expected each
    assert abs(flip.mean() - 0.5) < 0.015
    assert abs(np.corrcoef(top, left)[0, 1]) < 0.03


def reference_resized_crop(u: np.ndarray) -> tuple:
    """One sample's random resized crop from its uniforms, written as a plain loop."""
    low, high = math.log(RESIZED_CROP_RATIO[0]), math.log(RESIZED_CROP_RATIO[1])
    width = height = 1.0
    for attempt in range(RESIZED_CROP_TRIES):
        area = RESIZED_CROP_SCALE[0] + u[2 * attempt] * (RESIZED_CROP_SCALE[1] - RESIZED_CROP_SCALE[0])
        ratio = math.exp(low + u[2 * attempt + 1] * (high - low))
        if math.sqrt(area * ratio) <= 1 and math.sqrt(area / ratio) <= 1:
            width, height = math.sqrt(area * ratio), math.sqrt(area / ratio)
            break
    rest = 2 * RESIZED_CROP_TRIES
    return (max(1, round(width * FIXED_POINT)), max(1, round(height * FIXED_POINT)),
            math.floor(u[rest] * FIXED_POINT), math.floor(u[rest + 1] * FIXED_POINT), bool(u[rest + 2] < 0.5))


def test_resized_crop_params_equal_the_per_sample_loop():
    indices = np.arange(4_000)
    drawn = list(zip(*(column.tolist() for column in resized_crop_params(5, 1, indices))))
    u = uniforms(5, 1, indices, 2 * RESIZED_CROP_TRIES + 3)
    assert drawn == [reference_resized_crop(row) for row in u]
    widths = np.array([d[0] for d in drawn]) / FIXED_POINT
    assert (widths == 1).mean() < 0.01  # the whole-image fallback is rare
    assert widths.min() < 0.3


@pytest.mark.parametrize("train_crop", ["bas", "random-resized"])
def test_a_batch_fetch_equals_the_items(tiny_synthetic_root, train_crop):
    split = load_split("synthetic", tiny_synthetic_root, "train")
    dataset = WSOLDataset(split, train=True, image_size=32, resize=40, seed=3, train_crop=train_crop)
    dataset.set_epoch(2)
    indices = [7, 0, 11, 4]
    batch = dataset.__getitems__(indices)
    for (image, label, index), expected_index in zip(batch, indices):
        single = dataset[expected_index]
        assert index == expected_index == single[2] and label == single[1]
        assert torch.equal(image, single[0])
    dataset.set_epoch(3)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(batch, dataset.__getitems__(indices)))


def test_dataloader_benchmark_measures_the_host_draws(tiny_synthetic_root):
    """``benchmarks/dataloader.py``'s host-draw measurement runs and reports positive costs."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import dataloader

    split = load_split("synthetic", tiny_synthetic_root, "train")
    for train_crop in ("bas", "random-resized"):
        dataset = WSOLDataset(split, train=True, image_size=32, resize=40, train_crop=train_crop)
        cost = dataloader.host_draw_cost(dataset, batch_size=4, samples=400, repeats=1)
        assert cost["ours"] > 0 and cost["per_sample_generator"] > 0
