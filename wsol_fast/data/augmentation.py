"""Training augmentation parameters, drawn vectorized from (seed, epoch, sample index).

A counter-based generator: the k-th uniform of sample i in an epoch is SplitMix64's output for
the counter ``(i, k)`` under that epoch's key, so the draws of any set of samples are a few numpy
operations over arrays, with no per-sample generator object, and depend on neither worker, batch
nor reading order. Both loaders take these arrays: the torch loader per batch of samples
(``WSOLDataset.__getitems__``), DALI per batch through ``fn.external_source``.

- BAS crop (``bas_crop_params``): top and left uniform over the ``resize - image_size + 1``
  positions, flip with probability 1/2.
- Random resized crop (``resized_crop_params``): area fraction uniform in RESIZED_CROP_SCALE, log
  aspect uniform in RESIZED_CROP_RATIO (relative to the image's own aspect, so no image size is
  needed); the first of RESIZED_CROP_TRIES tries that fits, else the whole image; position
  uniform in the free range; flip. Sizes and positions are whole numbers of 1/FIXED_POINT.
"""
from __future__ import annotations

import functools

import numpy as np

FIXED_POINT = 1 << 16  # resized-crop fractions are whole numbers of 1/FIXED_POINT
RESIZED_CROP_SCALE = (0.08, 1.0)  # crop area, as a fraction of the image area
RESIZED_CROP_RATIO = (3 / 4, 4 / 3)  # crop aspect, relative to the image's own aspect
RESIZED_CROP_TRIES = 10

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))
_STREAMS = np.uint64(64)  # uniforms per sample the counter leaves room for


def derive_seed(*parts: int) -> int:
    """A 64-bit seed that is a deterministic, well-mixed function of the integers ``parts``."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0])


@functools.lru_cache(maxsize=16)
def _epoch_key(seed: int, epoch: int) -> np.uint64:
    return np.uint64(derive_seed(seed, epoch, 0x617567))  # "aug": apart from the shuffle's seed


def uniforms(seed: int, epoch: int, indices: np.ndarray, count: int, first: int = 0) -> np.ndarray:
    """(N, count) float64 uniforms in [0, 1): numbers ``first .. first + count - 1`` of samples
    ``indices`` (N,) in ``epoch``."""
    if first < 0 or first + count > int(_STREAMS):
        raise ValueError(f"uniforms {first}..{first + count - 1} per sample: only 0..{int(_STREAMS) - 1} exist")
    streams = np.arange(first, first + count, dtype=np.uint64)
    counters = np.asarray(indices, dtype=np.uint64)[:, None] * _STREAMS + streams
    z = _epoch_key(int(seed), int(epoch)) + (counters + np.uint64(1)) * _GOLDEN  # SplitMix64, wrapping
    z = (z ^ (z >> np.uint64(30))) * _MIX[0]
    z = (z ^ (z >> np.uint64(27))) * _MIX[1]
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def bas_crop_params(seed: int, epoch: int, indices: np.ndarray, image_size: int, resize: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(top, left, flip)`` (N,) int64, int64, bool of the BAS crop of each sample."""
    u = uniforms(seed, epoch, indices, 3)
    positions = resize - image_size + 1
    top, left = (np.floor(u[:, k] * positions).astype(np.int64) for k in (0, 1))
    return top, left, u[:, 2] < 0.5


def resized_crop_params(seed: int, epoch: int, indices: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(width, height, x, y, flip)`` (N,) of each sample's random resized crop: the first four
    int64 in units of 1/FIXED_POINT (width and height of the image's; position in the free
    range), flip bool. Try t uses uniforms 2t, 2t + 1 (area, log aspect) and is drawn only for
    the samples no earlier try fitted; position and flip use the three after the last try."""
    indices = np.asarray(indices, dtype=np.int64)
    width, height = np.ones(len(indices)), np.ones(len(indices))
    low, high = np.log(RESIZED_CROP_RATIO[0]), np.log(RESIZED_CROP_RATIO[1])
    pending = np.arange(len(indices))
    for attempt in range(RESIZED_CROP_TRIES):
        if not len(pending):
            break
        u = uniforms(seed, epoch, indices[pending], 2, first=2 * attempt)
        area = RESIZED_CROP_SCALE[0] + u[:, 0] * (RESIZED_CROP_SCALE[1] - RESIZED_CROP_SCALE[0])
        ratio = np.exp(low + u[:, 1] * (high - low))
        widths, heights = np.sqrt(area * ratio), np.sqrt(area / ratio)
        fits = (widths <= 1) & (heights <= 1)
        width[pending[fits]], height[pending[fits]] = widths[fits], heights[fits]
        pending = pending[~fits]
    u = uniforms(seed, epoch, indices, 3, first=2 * RESIZED_CROP_TRIES)
    x, y = (np.floor(u[:, k] * FIXED_POINT).astype(np.int64) for k in (0, 1))
    fixed = [np.maximum(1, np.rint(side * FIXED_POINT).astype(np.int64)) for side in (width, height)]
    return fixed[0], fixed[1], x, y, u[:, 2] < 0.5


def resized_crop_box(image_width: int, image_height: int, width: int, height: int, x: int, y: int):
    """``(left, top, crop_width, crop_height)`` in pixels of the crop ``resized_crop_params`` drew;
    integer arithmetic, repeated by the DALI graph (dali_pipelines) so both cut the same pixels."""
    crop_w = max(image_width * width // FIXED_POINT, 1)
    crop_h = max(image_height * height // FIXED_POINT, 1)
    left = (image_width - crop_w + 1) * x // FIXED_POINT
    top = (image_height - crop_h + 1) * y // FIXED_POINT
    return left, top, crop_w, crop_h
