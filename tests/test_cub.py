"""CUB-200-2011 reader on a tiny fabricated tree: values, order, and every kind of bad input."""
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsol_fast.data import AnnotationError, ImageReadError, read_cub

# id, relpath, class (1-based), is_train, (x, y, w, h), image (width, height)
ENTRIES = [
    (1, "001.Alpha/a_1.jpg", 1, 1, (2.0, 3.0, 20.0, 10.5), (40, 30)),
    (2, "001.Alpha/a_2.jpg", 1, 0, (0.0, 0.0, 33.0, 17.0), (33, 17)),
    (3, "002.Beta/b_1.jpg", 2, 0, (5.5, 1.0, 4.0, 12.0), (24, 50)),
    (4, "002.Beta/b 2.jpg", 2, 1, (1.0, 2.0, 3.0, 4.0), (20, 20)),
    (5, "003.Gamma/c_1.jpg", 3, 1, (10.0, 10.0, 25.0, 5.0), (60, 21)),
]
CLASSES = ["001.Alpha", "002.Beta", "003.Gamma"]


def write_cub_tree(root: Path) -> Path:
    """Write ENTRIES as a CUB-layout tree with real JPEGs of the listed sizes."""
    rng = np.random.default_rng(0)
    for _, relpath, _, _, _, (width, height) in ENTRIES:
        path = root / "images" / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path, quality=90)
    tables = {
        "images.txt": [f"{i} {rel}" for i, rel, *_ in ENTRIES],
        "image_class_labels.txt": [f"{i} {c}" for i, _, c, *_ in ENTRIES],
        "train_test_split.txt": [f"{i} {t}" for i, _, _, t, *_ in ENTRIES],
        "bounding_boxes.txt": [f"{i} {x} {y} {w} {h}" for i, _, _, _, (x, y, w, h), _ in ENTRIES],
        "classes.txt": [f"{k + 1} {name}" for k, name in enumerate(CLASSES)],
    }
    for name, lines in tables.items():
        (root / name).write_text("\n".join(lines) + "\n")
    return root


def replace_line(path: Path, lineno: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[lineno - 1] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def cub_root(tmp_path) -> Path:
    return write_cub_tree(tmp_path / "CUB_200_2011")


@pytest.mark.parametrize("split, is_train", [("train", 1), ("test", 0)])
def test_reads_split_values_and_order(cub_root, split, is_train):
    expected = [e for e in ENTRIES if e[3] == is_train]
    data = read_cub(cub_root, split)
    assert len(data) == len(expected)
    assert data.class_names == CLASSES and data.num_classes == 3
    assert data.root == cub_root.resolve()
    assert [p.is_absolute() for p in data.image_paths] == [True] * len(expected)
    assert data.image_paths == [cub_root.resolve() / "images" / e[1] for e in expected]
    assert data.labels.dtype == np.int64
    np.testing.assert_array_equal(data.labels, [e[2] - 1 for e in expected])
    assert data.sizes.dtype == np.int64 and data.sizes.shape == (len(expected), 2)
    np.testing.assert_array_equal(data.sizes, [e[5] for e in expected])
    for boxes, (*_, (x, y, w, h), _) in zip(data.boxes, expected):
        assert boxes.dtype == np.float32 and boxes.shape == (1, 4)
        np.testing.assert_array_equal(boxes, [[x, y, x + w, y + h]])


def test_ignores_blank_lines_and_crlf(cub_root):
    path = cub_root / "bounding_boxes.txt"
    path.write_bytes(b"\r\n" + path.read_bytes().replace(b"\n", b"\r\n") + b"\r\n  \r\n")
    np.testing.assert_array_equal(read_cub(cub_root, "train").boxes[0], [[2.0, 3.0, 22.0, 13.5]])


MALFORMED = [
    ("images.txt", 2, "2", "expected 2 fields, found 1"),
    ("images.txt", 2, "two 001.Alpha/a_2.jpg", "image id is not an integer"),
    ("images.txt", 3, "2 002.Beta/b_1.jpg", "duplicate image id 2"),
    ("image_class_labels.txt", 3, "3 2 7", "expected 2 fields, found 3"),
    ("image_class_labels.txt", 3, "3 bird", "class id is not an integer"),
    ("image_class_labels.txt", 3, "3 4", "class id 4 out of range 1..3"),
    ("image_class_labels.txt", 3, "3 0", "class id 0 out of range 1..3"),
    ("image_class_labels.txt", 3, "99 1", "unknown image id 99"),
    ("image_class_labels.txt", 3, "2 1", "duplicate line for image id 2"),
    ("train_test_split.txt", 4, "4 2", "is_train must be 0 or 1"),
    ("train_test_split.txt", 4, "4.0 1", "image id is not an integer"),
    ("bounding_boxes.txt", 5, "5 10 10 25", "expected 5 fields, found 4"),
    ("bounding_boxes.txt", 5, "5 10 ten 25 5", "box values are not numbers"),
    ("bounding_boxes.txt", 5, "5 10 10 nan 5", "box values must be finite"),
    ("bounding_boxes.txt", 5, "5 10 10 0 5", "box width and height must be positive"),
    ("bounding_boxes.txt", 5, "5 10 10 25 -5", "box width and height must be positive"),
    ("bounding_boxes.txt", 5, "6 10 10 25 5", "unknown image id 6"),
    ("classes.txt", 2, "3 002.Beta", "class ids must run 1, 2, 3, ... in order; expected 2"),
    ("classes.txt", 3, "3", "expected 2 fields, found 1"),
]


@pytest.mark.parametrize("filename, lineno, text, what", MALFORMED)
def test_malformed_line_names_file_and_line(cub_root, filename, lineno, text, what):
    path = cub_root / filename
    replace_line(path, lineno, text)
    with pytest.raises(AnnotationError) as info:
        read_cub(cub_root, "train")
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert message.startswith(f"{path.resolve()}:{lineno}: {what}")
    assert message.endswith(f": {text!r}")


def test_missing_line_for_an_image_is_reported(cub_root):
    path = cub_root / "train_test_split.txt"
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines() if not line.startswith("3 ")))
    with pytest.raises(AnnotationError, match=r"train_test_split\.txt: no line for 1 image id.*\[3\]"):
        read_cub(cub_root, "test")


@pytest.mark.parametrize(
    "filename",
    ["images.txt", "image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt", "classes.txt"],
)
def test_missing_annotation_file_is_named(cub_root, filename):
    (cub_root / filename).unlink()
    with pytest.raises(FileNotFoundError, match=filename):
        read_cub(cub_root, "train")


def test_missing_image_names_path_and_listing_line(cub_root):
    (cub_root / "images" / "002.Beta" / "b 2.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"b 2\.jpg.*image id 4.*images\.txt:4"):
        read_cub(cub_root, "train")
    assert len(read_cub(cub_root, "test")) == 2  # the other split does not need that image


def test_undecodable_image_header_names_path(cub_root):
    (cub_root / "images" / "003.Gamma" / "c_1.jpg").write_bytes(b"this is not an image")
    with pytest.raises(ImageReadError, match=r"c_1\.jpg"):
        read_cub(cub_root, "train")


def test_bad_split_and_missing_root(tmp_path, cub_root):
    with pytest.raises(ValueError, match="split must be one of"):
        read_cub(cub_root, "val")
    with pytest.raises(FileNotFoundError, match="root directory not found"):
        read_cub(tmp_path / "nowhere", "train")


def test_box_entirely_outside_its_image_is_refused_with_file_and_line(cub_root):
    replace_line(cub_root / "bounding_boxes.txt", 4, "4 500 500 30 30")  # image 4 is 20x20
    with pytest.raises(AnnotationError, match=re.escape(
            f"{cub_root.resolve() / 'bounding_boxes.txt'}:4 (image id 4): box [500.0, 500.0, 530.0, 530.0] lies "
            "entirely outside its 20x20 image")):
        read_cub(cub_root, "train")
    read_cub(cub_root, "test")  # the other split does not hold it


def test_boxes_partly_outside_are_counted_in_a_warning(cub_root):
    replace_line(cub_root / "bounding_boxes.txt", 1, "1 -3 2 20 10.5")
    replace_line(cub_root / "bounding_boxes.txt", 5, "5 50 10 25 20")  # 60x21 image: x1 75, y1 30
    with pytest.warns(RuntimeWarning, match="2 ground-truth box"):
        data = read_cub(cub_root, "train")
    assert data.boxes[0].tolist() == [[-3.0, 2.0, 17.0, 12.5]], "kept as annotated; the protocols clip"
