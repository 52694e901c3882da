"""``--skip-bad-images`` skips what the README says it skips: zero-byte files, text named ``.jpg``,
missing files and truncated JPEGs are left out and counted by training, the mean-map pass and
evaluation (whose JSON says how many images were scored and which were skipped); without the
flag the first one is named with its annotation line."""
import json
from pathlib import Path

import pytest

from wsol_fast.checkpoint import load_checkpoint
from wsol_fast.commands.evaluate import evaluate_main
from wsol_fast.commands.train import train_main
from wsol_fast.data import SyntheticSpec, generate_synthetic, read_cub
from wsol_fast.mean_maps import MeanMaps

SPEC = dict(num_classes=3, train_per_class=4, test_per_class=2, image_size=64, seed=0)
TINY = ["--synthetic-classes", "3", "--synthetic-train-per-class", "4", "--synthetic-test-per-class", "2",
        "--synthetic-image-size", "64", "--image-size", "64", "--batch-size", "4", "--width", "0.25",
        "--workers", "0", "--epochs", "1"]


def damage(root: Path) -> dict[str, Path]:
    """Break four training images and one test image of the set at ``root`` in four ways (the
test JPEG cut to 600 bytes, the training one cut after its header)."""
    train, test = read_cub(root, "train").image_paths, read_cub(root, "test").image_paths
    broken = {"empty": train[0], "text": train[4], "missing": train[8], "cut": train[9], "test cut": test[1]}
    broken["empty"].write_bytes(b"")
    broken["text"].write_text("this is not a JPEG")
    broken["missing"].unlink()
    data = broken["cut"].read_bytes()  # header whole (so the reader reads its size), scan cut short
    broken["cut"].write_bytes(data[:data.index(b"\xff\xda") + 60])
    data = broken["test cut"].read_bytes()
    broken["test cut"].write_bytes(data[:600])
    return broken


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("damaged") / "data"
    generate_synthetic(root, SyntheticSpec(**SPEC))
    return root, damage(root)


@pytest.mark.parametrize("loader", ["dali", "torch"])
def test_training_mean_maps_and_evaluation_leave_bad_images_out(damaged, tmp_path, loader, capsys):
    root, broken = damaged
    args = [*TINY, "--data-root", str(root), "--out", str(tmp_path / "run"), "--loader", loader, "--skip-bad-images"]
    assert train_main(args) == 0, capsys.readouterr().out
    assert train_main([*args, "--stage", "late"]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "--skip-bad-images: 3 image(s) of the training split left out" in out
    for stage in ("early", "late"):
        (record,) = [json.loads(line) for line in (tmp_path / f"run/{stage}/log.jsonl").read_text().splitlines()]
        assert record["skipped_images"] == 4, stage  # 3 by the reader, the cut JPEG by the loader
    late = load_checkpoint(tmp_path / "run/late/checkpoint.pt")
    assert int(MeanMaps.from_state(late["mean_maps"]).counts.sum()) == 8

    result = tmp_path / "eval.json"
    assert evaluate_main(["--checkpoint", str(tmp_path / "run/late/checkpoint.pt"), "--protocol", "both",
                          "--loader", loader, "--skip-bad-images", "--out", str(result)]) == 0
    scores = json.loads(result.read_text())
    assert scores["images"] == 5 and scores["images_listed"] == 6
    assert [row["path"] for row in scores["skipped"]] == [str(broken["test cut"])]


def test_without_the_flag_the_first_bad_image_is_named_with_its_line(damaged, tmp_path, capsys):
    root, broken = damaged
    assert train_main([*TINY, "--data-root", str(root), "--out", str(tmp_path / "run")]) == 1
    out = capsys.readouterr().out
    assert f"error: cannot read image header of {broken['empty']}" in out
    assert f"{root / 'images.txt'}:1; pass --skip-bad-images to leave such files out" in out


def test_the_reader_lists_what_it_left_out(damaged):
    root, broken = damaged
    split = read_cub(root, "train", skip_bad_images=True)
    assert len(split) == 9 and broken["cut"] in split.image_paths
    assert [path for path, _ in split.skipped] == [str(broken[k]) for k in ("empty", "text", "missing")]
    assert "image not found" in split.skipped[2][1]
