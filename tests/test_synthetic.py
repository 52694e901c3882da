"""Synthetic WSOL dataset: determinism, marker handling, exact boxes and a real WSOL problem."""
import colorsys
import os
import stat
import json
from dataclasses import asdict, replace

import numpy as np
import pytest
from PIL import Image

from wsol_fast.data import read_cub
from wsol_fast.data import synthetic
from wsol_fast.data.synthetic import (
    MARKER_NAME,
    PART_PALETTE,
    SyntheticSpec,
    class_styles,
    generate_synthetic,
    is_stale,
    render_sample,
)

ANNOTATIONS = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt", "classes.txt")


def mask_box(mask: np.ndarray) -> list[float]:
    """Bounding box ``x0, y0, x1, y1`` (exclusive max) of a boolean mask."""
    rows, cols = np.nonzero(mask)
    return [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]


def test_layout_and_split(tiny_synthetic_root, tiny_synthetic_spec):
    spec = tiny_synthetic_spec
    for name in ANNOTATIONS + (MARKER_NAME,):
        assert (tiny_synthetic_root / name).is_file()
    train, test = read_cub(tiny_synthetic_root, "train"), read_cub(tiny_synthetic_root, "test")
    assert len(train) == spec.num_classes * spec.train_per_class
    assert len(test) == spec.num_classes * spec.test_per_class
    np.testing.assert_array_equal(np.bincount(train.labels), [spec.train_per_class] * spec.num_classes)
    assert train.class_names == [style.name for style in class_styles(spec)]
    np.testing.assert_array_equal(train.sizes, [[spec.image_size, spec.image_size]] * len(train))
    for path in train.image_paths:
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.mode == "RGB"


def test_default_split_is_three_to_one():
    spec = SyntheticSpec()
    assert spec.train_per_class / spec.images_per_class == 0.75


def test_written_boxes_are_the_rendered_object_boxes(tiny_synthetic_root, tiny_synthetic_spec):
    spec = tiny_synthetic_spec
    for split, first in (("train", 0), ("test", spec.train_per_class)):
        data = read_cub(tiny_synthetic_root, split)
        per_class = spec.train_per_class if split == "train" else spec.test_per_class
        for n, boxes in enumerate(data.boxes):
            sample = render_sample(spec, n // per_class, first + n % per_class)
            np.testing.assert_array_equal(boxes, sample.box[None])


def test_generation_is_deterministic(tmp_path, tiny_synthetic_root, tiny_synthetic_spec):
    again = generate_synthetic(tmp_path / "again", tiny_synthetic_spec)
    for name in ANNOTATIONS + (MARKER_NAME,):
        assert (again / name).read_bytes() == (tiny_synthetic_root / name).read_bytes()
    first, second = read_cub(tiny_synthetic_root, "train"), read_cub(again, "train")
    for a, b in zip(first.image_paths, second.image_paths):
        assert a.read_bytes() == b.read_bytes()
        np.testing.assert_array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    other = render_sample(replace(tiny_synthetic_spec, seed=1), 0, 0)
    assert not np.array_equal(other.image, render_sample(tiny_synthetic_spec, 0, 0).image)


def test_matching_marker_is_a_no_op(tiny_synthetic_root, tiny_synthetic_spec):
    before = {p: p.stat().st_mtime_ns for p in tiny_synthetic_root.rglob("*")}
    assert generate_synthetic(tiny_synthetic_root, tiny_synthetic_spec) == tiny_synthetic_root
    assert {p: p.stat().st_mtime_ns for p in tiny_synthetic_root.rglob("*")} == before


def test_marker_for_another_spec_raises(tiny_synthetic_root, tiny_synthetic_spec):
    with pytest.raises(ValueError, match=r"different spec \(seed: existing 0, requested 3\)"):
        generate_synthetic(tiny_synthetic_root, replace(tiny_synthetic_spec, seed=3))


def test_marker_from_another_generator_version_raises(tmp_path, tiny_synthetic_spec):
    root = tmp_path / "old"
    root.mkdir()
    payload = {"generator_version": 0, "spec": json.loads(json.dumps(asdict(tiny_synthetic_spec)))}
    (root / MARKER_NAME).write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="generator_version 0"):
        generate_synthetic(root, tiny_synthetic_spec)


def test_foreign_non_empty_root_is_refused(tmp_path, tiny_synthetic_spec):
    root = tmp_path / "foreign"
    root.mkdir()
    (root / "images.txt").write_text("1 a.jpg\n")
    with pytest.raises(FileExistsError, match=MARKER_NAME):
        generate_synthetic(root, tiny_synthetic_spec)
    assert sorted(p.name for p in root.iterdir()) == ["images.txt"]


def test_interrupted_generation_leaves_nothing_behind(tmp_path, tiny_synthetic_spec, monkeypatch):
    def fail_after_some_files(directory, spec):
        (directory / "images.txt").write_text("partial\n")
        raise KeyboardInterrupt

    root = tmp_path / "data" / "synthetic"
    root.parent.mkdir()
    root.mkdir()  # an empty root is fine to generate into
    monkeypatch.setattr(synthetic, "_write_dataset", fail_after_some_files)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic(root, tiny_synthetic_spec)
    assert sorted(p.name for p in root.parent.iterdir()) == ["synthetic"]
    assert not any(root.iterdir())
    monkeypatch.undo()
    small = replace(tiny_synthetic_spec, num_classes=2, train_per_class=1, test_per_class=1)
    generate_synthetic(root, small)
    assert (root / MARKER_NAME).is_file()
    assert sorted(p.name for p in root.parent.iterdir()) == ["synthetic"]


@pytest.mark.parametrize("image_size", [48, 97, 128])
def test_box_is_exactly_the_object_and_part_is_small(image_size):
    spec = SyntheticSpec(num_classes=6, image_size=image_size, seed=5, part_probability=1.0)
    for class_index in range(spec.num_classes):
        for sample_index in range(3):
            sample = render_sample(spec, class_index, sample_index)
            assert sample.image.shape == (image_size, image_size, 3) and sample.image.dtype == np.uint8
            np.testing.assert_array_equal(sample.box, mask_box(sample.object_mask))
            assert sample.box.dtype == np.float32
            assert not (sample.part_mask & ~sample.object_mask).any()
            part_fraction = sample.part_mask.sum() / sample.object_mask.sum()
            assert 0.3 * spec.part_area_fraction < part_fraction < 2.5 * spec.part_area_fraction
            x0, y0, x1, y1 = mask_box(sample.part_mask)
            assert (x1 - x0) * (y1 - y0) < 0.2 * (sample.box[2] - sample.box[0]) * (sample.box[3] - sample.box[1])


def test_part_carries_the_class_unique_colours():
    spec = SyntheticSpec(num_classes=12, image_size=96, seed=2, part_probability=1.0)
    codes = [style.part_code for style in class_styles(spec)]
    assert len(set(codes)) == len(codes)
    for class_index, (_, first, second) in enumerate(codes):
        sample = render_sample(spec, class_index, 0)
        part_pixels = sample.image[sample.part_mask]
        expected = np.round(PART_PALETTE[[first, second]] * 255).astype(np.uint8)
        is_first = (part_pixels == expected[0]).all(-1)
        is_second = (part_pixels == expected[1]).all(-1)
        assert (is_first | is_second).all() and is_first.any() and is_second.any()


def test_class_mean_object_masks_carry_a_shape_prior():
    """Nearest class-mean mask classifies held-out object masks far above chance."""
    spec = SyntheticSpec(num_classes=4, image_size=48, seed=0)
    samples = 24
    masks = np.array(
        [[render_sample(spec, c, i).object_mask for i in range(samples)] for c in range(spec.num_classes)],
        dtype=np.float32,
    )
    means = masks[:, : samples // 2].mean(axis=1)
    held_out = masks[:, samples // 2 :]
    distances = np.abs(held_out[:, :, None] - means[None, None]).mean(axis=(-1, -2))
    accuracy = (distances.argmin(-1) == np.arange(spec.num_classes)[:, None]).mean()
    assert accuracy > 0.6  # chance is 0.25


def body_hue_accuracy(spec: SyntheticSpec, samples: int) -> float:
    """Accuracy of guessing the class whose hue is nearest to the mean colour of the body."""
    centres = np.arange(spec.num_classes) / spec.num_classes
    correct = 0
    for class_index in range(spec.num_classes):
        for sample_index in range(samples):
            sample = render_sample(spec, class_index, sample_index)
            body = sample.object_mask & ~sample.part_mask
            hue = colorsys.rgb_to_hsv(*(sample.image[body].mean(axis=0) / 255))[0]
            circular = np.abs((hue - centres + 0.5) % 1.0 - 0.5)
            correct += int(circular.argmin() == class_index)
    return correct / (spec.num_classes * samples)


def test_body_hue_is_class_evidence_that_overlap_blurs():
    spec = SyntheticSpec(num_classes=10, image_size=48, distractor_count_range=(0, 0), seed=1)
    assert body_hue_accuracy(spec, 16) > 0.5  # chance is 0.1
    assert 0.15 < body_hue_accuracy(replace(spec, body_hue_overlap=1.0), 16) < 0.7
    assert body_hue_accuracy(replace(spec, body_hue_overlap=0.0), 4) > 0.9


@pytest.mark.parametrize("probability", [0.0, 0.5, 1.0])
def test_part_appears_with_its_probability(probability):
    spec = SyntheticSpec(num_classes=4, image_size=48, seed=3, part_probability=probability)
    has_part = [render_sample(spec, c, i).part_mask.any() for c in range(4) for i in range(16)]
    assert abs(np.mean(has_part) - probability) < 0.15


def mean_saturation_outside_object(spec: SyntheticSpec, samples: int) -> float:
    """Mean HSV saturation of the pixels outside the object that differ most from the background
    trend (the distractors), over ``samples`` images of class 0."""
    values = []
    for sample_index in range(samples):
        sample = render_sample(spec, 0, sample_index)
        pixels = sample.image[~sample.object_mask].astype(np.float32) / 255
        saturation = (pixels.max(1) - pixels.min(1)) / np.maximum(pixels.max(1), 1e-6)
        values.append(np.quantile(saturation, 0.95))
    return float(np.mean(values))


def test_distractors_are_desaturated_by_the_knob():
    spec = SyntheticSpec(num_classes=4, image_size=64, seed=4, distractor_count_range=(3, 3))
    grey = mean_saturation_outside_object(replace(spec, distractor_saturation=0.0), 8)
    coloured = mean_saturation_outside_object(replace(spec, distractor_saturation=1.0), 8)
    assert coloured > grey + 0.1


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 10_000}, "num_classes"),
        ({"test_per_class": 0}, "test_per_class"),
        ({"image_size": 16}, "image_size"),
        ({"object_scale_range": (0.8, 0.5)}, "object_scale_range"),
        ({"part_area_fraction": 0.0}, "part_area_fraction"),
        ({"body_hue_overlap": -1.0}, "body_hue_overlap"),
        ({"part_probability": 1.5}, "part_probability"),
        ({"distractor_saturation": -0.1}, "distractor_saturation"),
        ({"distractor_count_range": (3, 1)}, "distractor_count_range"),
        ({"jpeg_quality": 0}, "jpeg_quality"),
    ],
)
def test_spec_validation(changes, message):
    with pytest.raises(ValueError, match=message):
        SyntheticSpec(**changes)


def test_is_stale_tells_an_older_or_other_dataset(tmp_path, tiny_synthetic_spec):
    small = replace(tiny_synthetic_spec, num_classes=2, train_per_class=1, test_per_class=1)
    root = tmp_path / "synthetic"
    assert not is_stale(root, small)  # nothing there yet
    generate_synthetic(root, small)
    assert not is_stale(root, small)
    assert is_stale(root, replace(small, seed=small.seed + 1))
    marker = root / MARKER_NAME
    payload = json.loads(marker.read_text())
    marker.write_text(json.dumps({**payload, "generator_version": payload["generator_version"] - 1}))
    assert is_stale(root, small)


def test_generated_folders_follow_the_umask(tmp_path, tiny_synthetic_spec):
    previous = os.umask(0o022)
    try:
        root = generate_synthetic(tmp_path / "shared", tiny_synthetic_spec)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(root.stat().st_mode) == 0o755, "others can read the data (mkdtemp made it 0700)"
    assert stat.S_IMODE((root / "classes.txt").stat().st_mode) == 0o644
