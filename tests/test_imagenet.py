"""ImageNet (ILSVRC2012 CLS-LOC) reader on tiny fabricated trees: order, boxes, sources, bad input."""
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsol_fast.data import UNKNOWN_SIZE, AnnotationError, load_split, read_imagenet

WNIDS = ["n01530575", "n02084071", "n07747607"]  # sorted; folders are created in another order
# wnid -> train file names (mixed suffixes and case)
TRAIN = {
    "n07747607": ["c_2.JPEG", "c_1.jpg"],
    "n01530575": ["a_1.JPEG", "a_2.png", "a_3.jpeg"],
    "n02084071": ["b_1.JPG"],
}
# val stem, (width, height), objects [(wnid, (xmin, ymin, xmax, ymax))]
VAL = [
    ("ILSVRC2012_val_00000001", (23, 17), [("n02084071", (1, 2, 20, 15))]),
    (
        "ILSVRC2012_val_00000002",
        (31, 19),
        [("n07747607", (0, 0, 12, 9)), ("n07747607", (5, 3, 30, 18)), ("n07747607", (14, 1, 22.5, 7))],
    ),
    ("ILSVRC2012_val_00000003", (16, 28), [("n01530575", (3, 4, 9, 27)), ("n01530575", (0, 0, 15, 13))]),
    ("ILSVRC2012_val_00000004", (20, 20), [("n07747607", (2, 2, 19, 19))]),
]


def write_image(path: Path, size: tuple[int, int], rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG" if path.suffix.lower() == ".png" else "JPEG")


def xml_text(size: tuple[int, int] | None, objects) -> str:
    """A per-image annotation in the ILSVRC XML layout, one tag per line."""
    lines = ["<annotation>", "  <folder>val</folder>"]
    if size is not None:
        lines += ["  <size>", f"    <width>{size[0]}</width>", f"    <height>{size[1]}</height>",
                  "    <depth>3</depth>", "  </size>"]
    for wnid, (x0, y0, x1, y1) in objects:
        lines += ["  <object>", f"    <name>{wnid}</name>", "    <bndbox>", f"      <xmin>{x0}</xmin>",
                  f"      <ymin>{y0}</ymin>", f"      <xmax>{x1}</xmax>", f"      <ymax>{y1}</ymax>",
                  "    </bndbox>", "  </object>"]
    return "\n".join(lines + ["</annotation>"]) + "\n"


def csv_text() -> str:
    rows = ["ImageId,PredictionString"]
    for stem, _, objects in VAL:
        prediction = " ".join(f"{wnid} {x0} {y0} {x1} {y1}" for wnid, (x0, y0, x1, y1) in objects)
        rows.append(f"{stem},{prediction} ")
    return "\n".join(rows) + "\n"


def write_imagenet_tree(root: Path, xml_folder: str | None = "val", csv: bool = False) -> Path:
    """Train folders, flat val images, and val annotations as XML in ``xml_folder`` and/or the CSV."""
    rng = np.random.default_rng(0)
    for wnid, names in TRAIN.items():
        for k, name in enumerate(names):
            write_image(root / "train" / wnid / name, (9 + k, 7), rng)
        (root / "train" / wnid / "notes.txt").write_text("not an image\n")
    for stem, size, objects in VAL:
        write_image(root / "val" / f"{stem}.JPEG", size, rng)
        if xml_folder is not None:
            (root / xml_folder).mkdir(exist_ok=True)
            (root / xml_folder / f"{stem}.xml").write_text(xml_text(size, objects))
    if csv:
        (root / "LOC_val_solution.csv").write_text(csv_text())
    return root


def assert_same_split(a, b) -> None:
    assert a.root == b.root and a.image_paths == b.image_paths and a.class_names == b.class_names
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.sizes, b.sizes)
    assert len(a.boxes) == len(b.boxes)
    for boxes_a, boxes_b in zip(a.boxes, b.boxes):
        np.testing.assert_array_equal(boxes_a, boxes_b)


def assert_val_values(data, root: Path) -> None:
    assert data.class_names == WNIDS and data.root == root.resolve()
    assert data.image_paths == [root.resolve() / "val" / f"{stem}.JPEG" for stem, _, _ in VAL]
    assert data.labels.dtype == np.int64
    np.testing.assert_array_equal(data.labels, [WNIDS.index(objects[0][0]) for _, _, objects in VAL])
    np.testing.assert_array_equal(data.sizes, [size for _, size, _ in VAL])
    for boxes, (_, _, objects) in zip(data.boxes, VAL):
        assert boxes.dtype == np.float32 and boxes.shape == (len(objects), 4)
        np.testing.assert_array_equal(boxes, [box for _, box in objects])


@pytest.fixture
def xml_root(tmp_path) -> Path:
    return write_imagenet_tree(tmp_path / "imagenet")


def test_train_split_sorted_wnids_and_lazy_sizes(xml_root):
    data = read_imagenet(xml_root, "train")
    assert data.class_names == WNIDS
    expected = [(wnid, name) for wnid in WNIDS for name in sorted(TRAIN[wnid])]
    assert data.image_paths == [xml_root.resolve() / "train" / wnid / name for wnid, name in expected]
    np.testing.assert_array_equal(data.labels, [WNIDS.index(wnid) for wnid, _ in expected])
    assert data.sizes.dtype == np.int64
    np.testing.assert_array_equal(data.sizes, np.full((len(expected), 2), UNKNOWN_SIZE))
    assert all(boxes.shape == (0, 4) and boxes.dtype == np.float32 for boxes in data.boxes)


@pytest.mark.parametrize("folder", ["val", "val_xml", "LOC_val_xml"])
def test_val_from_xml_in_each_searched_folder(tmp_path, folder):
    root = write_imagenet_tree(tmp_path / "imagenet", xml_folder=folder)
    assert_val_values(read_imagenet(root, "val"), root)


def test_val_from_csv_matches_xml(tmp_path):
    xml_root = write_imagenet_tree(tmp_path / "imagenet")
    csv_root = write_imagenet_tree(tmp_path / "csv", xml_folder=None, csv=True)
    from_csv = read_imagenet(csv_root, "val")
    assert_val_values(from_csv, csv_root)
    from_xml = read_imagenet(xml_root, "val", annotations=xml_root / "val")
    from_explicit_csv = read_imagenet(xml_root, "val", annotations=csv_root / "LOC_val_solution.csv")
    assert_same_split(from_xml, from_explicit_csv)


def test_xml_is_preferred_to_csv_and_sizes_fall_back_to_headers(tmp_path):
    root = write_imagenet_tree(tmp_path / "imagenet", xml_folder="val_xml", csv=True)
    (root / "LOC_val_solution.csv").write_text("not even a header\n")  # never read
    stem, size, objects = VAL[1]
    (root / "val_xml" / f"{stem}.xml").write_text(xml_text(None, objects))
    data = read_imagenet(root, "val")
    np.testing.assert_array_equal(data.sizes[1], size)
    assert_val_values(data, root)


def test_synset_mapping_gives_class_order_without_train(xml_root):
    shutil.rmtree(xml_root / "train")
    mapping = ["n07747607 granny smith", "n01530575 brambling, Fringilla montifringilla", "n02084071 dog"]
    (xml_root / "LOC_synset_mapping.txt").write_text("\n".join(mapping) + "\n")
    data = read_imagenet(xml_root, "val")
    order = [line.split()[0] for line in mapping]
    assert data.class_names == order
    np.testing.assert_array_equal(data.labels, [order.index(objects[0][0]) for _, _, objects in VAL])


def test_missing_class_order_and_missing_annotations(xml_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="explicit_missing"):
        read_imagenet(xml_root, "val", annotations=tmp_path / "explicit_missing")
    for xml in (xml_root / "val").glob("*.xml"):
        xml.unlink()
    with pytest.raises(FileNotFoundError, match="LOC_val_solution.csv"):
        read_imagenet(xml_root, "val")
    shutil.rmtree(xml_root / "train")
    with pytest.raises(FileNotFoundError, match="LOC_synset_mapping.txt"):
        read_imagenet(xml_root, "val")


def test_duplicate_wnid_in_synset_mapping(xml_root):
    shutil.rmtree(xml_root / "train")
    path = xml_root / "LOC_synset_mapping.txt"
    path.write_text("n01530575 a\nn02084071 b\nn01530575 c\n")
    with pytest.raises(AnnotationError, match=re.escape(f"{path}:3: duplicate wnid n01530575")):
        read_imagenet(xml_root, "val")


BAD_XML = [
    ("<annotation><object>\n<name>n01530575</name>\n</annotation>\n", ":3: XML parse error"),
    (xml_text((23, 17), []), ": no <object> element"),
    (xml_text((23, 17), [("n99999999", (1, 2, 3, 4))]), ": object 1: unknown wnid 'n99999999'"),
    (xml_text((23, 17), [("n02084071", (1, 2, 3, 4)), ("n02084071", (1, "two", 3, 4))]),
     ": object 2: box coordinates are not numbers"),
    (xml_text((23, 17), [("n02084071", (5, 2, 4, 4))]), ": object 1: box needs x1 >= x0 and y1 >= y0"),
    (xml_text((23, 17), [("n02084071", (1, 6, 5, 4))]), ": object 1: box needs x1 >= x0 and y1 >= y0"),
    (xml_text((23, 17), [("n02084071", (1, 2, "inf", 4))]), ": object 1: box coordinates must be finite"),
    (xml_text((23, 17), [("n02084071", (1, 2, 3, 4))]).replace("<xmax>3</xmax>", ""),
     ": object 1: missing <xmax> in <bndbox>"),
    (xml_text((23, 17), [("n02084071", (1, 2, 3, 4))]).replace("<name>n02084071</name>", ""),
     ": object 1: missing <name> in <object>"),
    (re.sub(r"<bndbox>.*</bndbox>", "", xml_text((23, 17), [("n02084071", (1, 2, 3, 4))]), flags=re.S),
     ": object 1: missing <bndbox> in <object>"),
    (xml_text((23, 17), [("n02084071", (1, 2, 3, 4))]).replace("<width>23</width>", "<width>x</width>"),
     ": <size> width/height are not integers"),
    (xml_text((0, 17), [("n02084071", (1, 2, 3, 4))]), ": <size> width and height must be positive"),
]


@pytest.mark.parametrize("text, message", BAD_XML)
def test_malformed_xml_names_file(xml_root, text, message):
    path = xml_root / "val" / f"{VAL[0][0]}.xml"
    path.write_text(text)
    with pytest.raises(AnnotationError, match=re.escape(f"{path}{message}")):
        read_imagenet(xml_root, "val")


GROUPS_OF_5 = "PredictionString needs groups of 5 'wnid xmin ymin xmax ymax'"
BAD_CSV = [
    (1, "ImageId,Prediction", "expected the header 'ImageId,PredictionString'"),
    (2, "ILSVRC2012_val_00000001 n02084071 1 2 20 15", "expected 'ImageId,PredictionString'"),
    (2, "ILSVRC2012_val_00000001,", f"{GROUPS_OF_5}, found 0 fields"),
    (2, "ILSVRC2012_val_00000001,n02084071 1 2 20", f"{GROUPS_OF_5}, found 4 fields"),
    (2, "ILSVRC2012_val_00000001,n02084071 1 2 20 15 n02084071 1", f"{GROUPS_OF_5}, found 7 fields"),
    (3, "ILSVRC2012_val_00000002,n07747607 0 0 12 nine", "box coordinates are not numbers"),
    (3, "ILSVRC2012_val_00000002,n07747607 0 0 12 9 n00000000 1 1 2 2", "unknown wnid 'n00000000'"),
    (4, "ILSVRC2012_val_00000003,n01530575 9 4 3 27", "box needs x1 >= x0 and y1 >= y0"),
    (4, "ILSVRC2012_val_00000001,n02084071 1 2 20 15", "duplicate ImageId ILSVRC2012_val_00000001"),
    (5, "ILSVRC2012_val_00000009,n02084071 1 2 20 15",
     "annotation for 'ILSVRC2012_val_00000009', but no such image"),
]


@pytest.mark.parametrize("lineno, line, message", BAD_CSV)
def test_malformed_csv_names_file_and_line(tmp_path, lineno, line, message):
    root = write_imagenet_tree(tmp_path / "imagenet", xml_folder=None, csv=True)
    path = root / "LOC_val_solution.csv"
    lines = path.read_text().splitlines()
    lines[lineno - 1] = line
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AnnotationError, match=re.escape(f"{path}:{lineno}: {message}")):
        read_imagenet(root, "val")


def test_image_without_annotation_and_annotation_without_image(xml_root):
    stem, size, objects = VAL[2]
    image, xml = xml_root / "val" / f"{stem}.JPEG", xml_root / "val" / f"{stem}.xml"
    xml.unlink()
    expected = f"{xml_root / 'val'}: no annotation for 1 validation image(s), e.g. ['{image}']"
    with pytest.raises(AnnotationError, match=re.escape(expected)):
        read_imagenet(xml_root, "val")
    xml.write_text(xml_text(size, objects))
    image.unlink()
    expected = f"{xml}: annotation for {stem!r}, but no such image"
    with pytest.raises(AnnotationError, match=re.escape(expected)):
        read_imagenet(xml_root, "val")


def test_load_split_maps_test_to_val(xml_root):
    assert_same_split(load_split("imagenet", xml_root, "test"), read_imagenet(xml_root, "val"))
    assert_same_split(load_split("imagenet", xml_root, "val"), read_imagenet(xml_root, "val"))
    assert_same_split(load_split("imagenet", xml_root, "train"), read_imagenet(xml_root, "train"))
    with pytest.raises(ValueError, match="split must be one of"):
        load_split("imagenet", xml_root, "validation")
    with pytest.raises(ValueError, match="split must be one of"):
        read_imagenet(xml_root, "test")
    with pytest.raises(ValueError, match="'val' split only"):
        read_imagenet(xml_root, "train", annotations=xml_root / "val")


def test_val_box_entirely_outside_its_image_names_its_annotation(xml_root):
    stem, size, objects = VAL[0]
    xml = xml_root / "val" / f"{stem}.xml"
    xml.write_text(xml_text(size, [(objects[0][0], (size[0] + 5, 1, size[0] + 9, 3))]))
    with pytest.raises(AnnotationError, match=re.escape(f"{xml}: box [") + ".*lies entirely outside its"):
        read_imagenet(xml_root, "val")
