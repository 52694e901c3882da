"""The annotation-text primitives every reader shares (``wsol_fast.data.annotations``)."""
import numpy as np
import pytest

from wsol_fast.data import AnnotationError
from wsol_fast.data.annotations import annotation_error, parse_corner_box, parse_xywh_box, read_class_names


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
