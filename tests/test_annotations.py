"""The annotation-text primitives every reader shares (``wsol_fast.data.annotations``)."""
import numpy as np
import pytest

from wsol_fast.data import AnnotationError
from wsol_fast.data.annotations import (Listing, annotation_error, parse_corner_box, parse_xywh_box, read_class_names,
                                        read_per_image)


def test_class_names_plain_numbered_and_detected(tmp_path):
    plain, numbered = tmp_path / "plain.txt", tmp_path / "classes.txt"
    plain.write_text("tench\n\ngoldfish fish\n")
    numbered.write_text("1 001.Black_footed_Albatross\n2 002.Laysan Albatross\n")
    assert read_class_names(plain) == read_class_names(plain, numbered=False) == ["tench", "goldfish fish"]
    assert read_class_names(numbered) == ["001.Black_footed_Albatross", "002.Laysan Albatross"]
    assert read_class_names(numbered, numbered=False) == ["1 001.Black_footed_Albatross", "2 002.Laysan Albatross"]


@pytest.mark.parametrize("text, message", [
    ("1 a\n3 b\n", "classes.txt:2: class ids must run 1, 2, 3, ... in order; expected 2"),
    ("1 a\nb\n", "classes.txt:2: expected 2 fields, found 1"),
    ("one a\n", "classes.txt:1: class id is not an integer ('one')"),
    ("\n\n", "no class names listed"),
])
def test_numbered_class_names_refuse_bad_lines_naming_file_and_line(tmp_path, text, message):
    path = tmp_path / "classes.txt"
    path.write_text(text)
    with pytest.raises(AnnotationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_class_names(path, numbered=True)


def test_the_two_box_layouts():
    def fail(what):
        return annotation_error("f.txt", 3, what, "the line")
    assert parse_corner_box(["1", "2", "3.5", "4"], fail) == [1.0, 2.0, 3.5, 4.0]
    np.testing.assert_array_equal(parse_xywh_box(["1", "2", "3", "4"], fail), [[1, 2, 4, 6]])
    with pytest.raises(AnnotationError, match="f.txt:3: box needs x1 >= x0"):
        parse_corner_box(["5", "2", "3", "4"], fail)
    with pytest.raises(AnnotationError, match="f.txt:3: box width and height must be positive"):
        parse_xywh_box(["1", "2", "0", "4"], fail)


def _words(values, fail):
    return values


def test_per_image_tables_in_both_layouts(tmp_path):
    spaced, commas = tmp_path / "spaced.txt", tmp_path / "commas.txt"
    spaced.write_text("2 b  c\n\n1 a d\n")
    commas.write_text("x/a,b.jpg, 1 ,2\ny.jpg,3,4\nx/a,b.jpg,5,6\n")
    by_id = Listing({1: None, 2: None}, "images.txt", "image id", key_of=lambda text, fail: int(text))
    by_path = Listing({"x/a,b.jpg": 1, "y.jpg": 2}, "image_ids.txt", "image path", comma_separated=True)
    assert read_per_image(spaced, by_id, 2, _words) == {2: [["b", "c"]], 1: [["a", "d"]]}
    assert read_per_image(commas, by_path, 2, _words, several_per_image=True, with_lines=True) == {
        "x/a,b.jpg": [(1, ["1", "2"]), (3, ["5", "6"])], "y.jpg": [(2, ["3", "4"])]}
    with pytest.raises(AnnotationError, match="commas.txt:3: duplicate line for image path 'x/a,b.jpg'"):
        read_per_image(commas, by_path, 2, _words)
    with pytest.raises(AnnotationError, match="spaced.txt:1: expected 2 fields, found 3"):
        read_per_image(spaced, by_id, 1, _words)
    three = Listing({1: 0, 2: 0, 3: 0}, "images.txt", "image id", key_of=by_id.key_of)
    with pytest.raises(AnnotationError, match=r"spaced.txt: no line for 1 image id\(s\) listed in images.txt, e.g. \[3\]"):
        read_per_image(spaced, three, 2, _words)
