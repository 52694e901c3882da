"""wsolevaluation metadata reader on a tiny fabricated folder: values, optional files, bad input."""
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsol_fast.data import UNKNOWN_SIZE, AnnotationError, read_wsolevaluation

# relative path, label, (width, height), boxes (x0, y0, x1, y1)
ENTRIES = [
    ("val/b_1.JPEG", 2, (21, 13), [(1, 2, 20, 12), (3.5, 0, 9, 7)]),
    ("val/a,with comma.png", 0, (14, 25), [(0, 0, 13, 24)]),
    ("train/x/c 1.jpg", 1, (30, 11), [(4, 1, 8, 10), (0, 0, 29, 10), (10, 2, 12, 3)]),
]


def write_metadata(root: Path) -> tuple[Path, Path]:
    """Images under ``root/images`` and their metadata under ``root/metadata`` (boxes interleaved)."""
    rng = np.random.default_rng(0)
    image_root, metadata = root / "images", root / "metadata"
    metadata.mkdir(parents=True)
    for relpath, _, (width, height), _ in ENTRIES:
        path = image_root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
            path, format="PNG" if path.suffix == ".png" else "JPEG"
        )
    box_lines = [
        (k, f"{rel},{x0},{y0},{x1},{y1}")
        for rel, *_, boxes in ENTRIES
        for k, (x0, y0, x1, y1) in enumerate(boxes)
    ]
    tables = {
        "image_ids.txt": [rel for rel, *_ in ENTRIES],
        "class_labels.txt": [f"{rel},{label}" for rel, label, *_ in reversed(ENTRIES)],
        "image_sizes.txt": [f"{rel},{w},{h}" for rel, _, (w, h), _ in ENTRIES],
        "localization.txt": [line for _, line in sorted(box_lines, key=lambda item: item[0])],  # k-th boxes
    }
    for name, lines in tables.items():
        (metadata / name).write_text("\n".join(lines) + "\n")
    return metadata, image_root


@pytest.fixture
def tree(tmp_path) -> tuple[Path, Path]:
    return write_metadata(tmp_path)


def test_reads_values_in_image_ids_order(tree):
    metadata, image_root = tree
    data = read_wsolevaluation(metadata, image_root)
    assert data.root == image_root.resolve()
    assert data.image_paths == [image_root.resolve() / rel for rel, *_ in ENTRIES]
    assert data.class_names == ["0", "1", "2"]
    assert data.labels.dtype == np.int64
    np.testing.assert_array_equal(data.labels, [label for _, label, _, _ in ENTRIES])
    assert data.sizes.dtype == np.int64
    np.testing.assert_array_equal(data.sizes, [size for _, _, size, _ in ENTRIES])
    for boxes, (*_, expected) in zip(data.boxes, ENTRIES):
        assert boxes.dtype == np.float32 and boxes.shape == (len(expected), 4)
        np.testing.assert_array_equal(boxes, expected)


def test_class_names_file(tree, tmp_path):
    metadata, image_root = tree
    names = tmp_path / "names.txt"
    names.write_text("albatross\n\nblackbird\ncrow\nduck\n")
    data = read_wsolevaluation(metadata, image_root, class_names_file=names)
    assert data.class_names == ["albatross", "blackbird", "crow", "duck"]
    names.write_text("albatross\nblackbird\n")
    line = f"{ENTRIES[0][0]},2"
    expected = f"{metadata / 'class_labels.txt'}:3: label 2 is not below the 2 classes of {names}: {line!r}"
    with pytest.raises(AnnotationError, match=re.escape(expected)):
        read_wsolevaluation(metadata, image_root, class_names_file=names)


def test_sizes_from_headers_when_boxes_have_no_size_file(tree):
    metadata, image_root = tree
    (metadata / "image_sizes.txt").unlink()
    data = read_wsolevaluation(metadata, image_root)
    np.testing.assert_array_equal(data.sizes, [size for _, _, size, _ in ENTRIES])


def test_training_split_without_boxes(tree):
    metadata, image_root = tree
    (metadata / "localization.txt").unlink()
    with_sizes = read_wsolevaluation(metadata, image_root)
    np.testing.assert_array_equal(with_sizes.sizes, [size for _, _, size, _ in ENTRIES])
    assert all(boxes.shape == (0, 4) for boxes in with_sizes.boxes)
    (metadata / "image_sizes.txt").unlink()
    lazy = read_wsolevaluation(metadata, image_root)
    np.testing.assert_array_equal(lazy.sizes, np.full((len(ENTRIES), 2), UNKNOWN_SIZE))
    np.testing.assert_array_equal(lazy.labels, with_sizes.labels)


REL0, REL1, REL2 = (rel for rel, *_ in ENTRIES)
MALFORMED = [
    ("image_ids.txt", 2, REL0, "duplicate image path (first on line 1)"),
    ("class_labels.txt", 1, "nowhere.jpg,1", "unknown image path 'nowhere.jpg' (not in image_ids.txt)"),
    ("class_labels.txt", 1, REL2, "expected 2 comma-separated fields, found 1"),
    ("class_labels.txt", 1, f"{REL2},one", "label is not an integer ('one')"),
    ("class_labels.txt", 1, f"{REL2},-1", "label must be >= 0, found -1"),
    ("class_labels.txt", 3, f"{REL2},1", f"duplicate line for {REL2!r}"),
    ("image_sizes.txt", 1, f"{REL0},21", "expected 3 comma-separated fields, found 2"),
    ("image_sizes.txt", 1, f"{REL0},21,1.5", "width and height are not integers ('21,1.5')"),
    ("image_sizes.txt", 2, f"{REL1},0,25", "width and height must be positive, found 0 25"),
    ("localization.txt", 1, f"{REL0},0,0,13", "expected 5 comma-separated fields, found 4"),
    ("localization.txt", 2, f"{REL1},0,0,13,y", "box coordinates are not numbers ('0 0 13 y')"),
    ("localization.txt", 2, f"{REL1},0,0,13,nan", "box coordinates must be finite"),
    ("localization.txt", 2, f"{REL1},13,0,12,24", "box needs x1 >= x0 and y1 >= y0, found 13 0 12 24"),
    ("localization.txt", 2, "val/zz.png,0,0,13,24", "unknown image path 'val/zz.png' (not in image_ids.txt)"),
]


@pytest.mark.parametrize("name, lineno, line, message", MALFORMED)
def test_malformed_line_names_file_and_line(tree, name, lineno, line, message):
    metadata, image_root = tree
    path = metadata / name
    lines = path.read_text().splitlines()
    lines[lineno - 1] = line
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AnnotationError, match=re.escape(f"{path}:{lineno}: {message}: {line!r}")):
        read_wsolevaluation(metadata, image_root)


@pytest.mark.parametrize("name", ["class_labels.txt", "image_sizes.txt", "localization.txt"])
def test_missing_entries_are_named(tree, name):
    metadata, image_root = tree
    path = metadata / name
    lines = [line for line in path.read_text().splitlines() if not line.startswith(REL1)]
    path.write_text("\n".join(lines) + "\n")
    expected = f"{path}: no line for 1 image(s) listed in image_ids.txt, e.g. [{REL1!r}]"
    with pytest.raises(AnnotationError, match=re.escape(expected)):
        read_wsolevaluation(metadata, image_root)


def test_missing_files_and_images(tree):
    metadata, image_root = tree
    (image_root / ENTRIES[2][0]).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(f"{metadata / 'image_ids.txt'}:3")):
        read_wsolevaluation(metadata, image_root)
    (metadata / "class_labels.txt").unlink()
    (metadata / "image_ids.txt").write_text(f"{REL0}\n")
    with pytest.raises(FileNotFoundError, match="class_labels.txt"):
        read_wsolevaluation(metadata, image_root)
    (metadata / "image_ids.txt").write_text("\n\n")
    with pytest.raises(AnnotationError, match="no images listed"):
        read_wsolevaluation(metadata, image_root)
