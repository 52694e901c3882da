"""wsolevaluation metadata reader on a tiny fabricated folder: values, optional files, bad input;
the benchmark's split folders, OpenImages masks (read as its get_mask does), the preset a metadata
folder selects, and a mask split's evaluation (PxAP and classification)."""
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from wsolevaluation_trees import ReferencePxAPCounts, fabricate_tree

from wsol_fast import metrics
from wsol_fast.commands.train import train_config, train_main, train_parser
from wsol_fast.config import PRESETS
from wsol_fast.data import (UNKNOWN_SIZE, AnnotationError, WSOLDataset, load_data_split, normalize_pixels,
                            read_wsolevaluation, read_wsolevaluation_split)
from wsol_fast.data.masks import nearest_indices
from wsol_fast.engine import evaluate as engine
from wsol_fast.models import MobileNetBAS
from wsol_fast.ops import evaluation as eval_ops

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
    ("class_labels.txt", 3, f"{REL2},1", f"duplicate line for image path {REL2!r}"),
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
    expected = f"{path}: no line for 1 image path(s) listed in image_ids.txt, e.g. [{REL1!r}]"
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


# ---- the benchmark's split folders, OpenImages masks, the dataset a metadata folder describes ----

@pytest.fixture(scope="module")
def openimages(tmp_path_factory):
    return fabricate_tree(tmp_path_factory.mktemp("wsolevaluation"), "OpenImages")


def test_openimages_masks_are_read_lazily_as_union_and_ignore(openimages):
    split = read_wsolevaluation_split(openimages.metadata, "val", openimages.data, "OpenImages")
    assert split.masks is not None and len(split.masks) == len(openimages.ids["val"])
    assert all(boxes.shape == (0, 4) for boxes in split.boxes)
    assert all(path.as_posix().endswith(i) for path, i in zip(split.image_paths, openimages.ids["val"]))
    np.testing.assert_array_equal(split.labels, openimages.labels["val"])
    several = [i for i, files in enumerate(split.masks) if len(files.masks) == 2]
    assert several, "some images have two instance masks"
    assert not split.masks[-1].ignores, "the last image has no ignore mask"
    for files, mask, ignore in zip(split.masks, openimages.masks["val"], openimages.ignores["val"]):
        assert files.where.startswith(f"{openimages.metadata / 'val' / 'localization.txt'}:")
        loaded_mask, loaded_ignore = files.load(64)
        np.testing.assert_array_equal(loaded_mask, mask)
        np.testing.assert_array_equal(loaded_ignore, ignore)
        assert not (loaded_mask & loaded_ignore).any()
    subset = split.subset([2, 0])
    assert subset.masks == [split.masks[2], split.masks[0]]
    train = read_wsolevaluation_split(openimages.metadata, "train", openimages.data, "OpenImages")
    assert train.masks is None and len(train) == len(openimages.ids["train"])


def test_masks_are_resized_like_wsolevaluation_get_mask(openimages):
    """get_mask: cv2.imread grey, cv2.resize INTER_NEAREST to the size, > 0.5, union; ignore minus mask."""
    cv2 = pytest.importorskip("cv2")
    for source, size in [(64, 48), (64, 100), (7, 3), (5, 224), (333, 224)]:
        grid = np.arange(source, dtype=np.float32)[:, None] * np.ones((1, 3), dtype=np.float32)
        expected = cv2.resize(grid, (3, size), interpolation=cv2.INTER_NEAREST)[:, 0]
        np.testing.assert_array_equal(nearest_indices(source, size), expected.astype(np.int64))
    split = read_wsolevaluation_split(openimages.metadata, "test", openimages.data, "OpenImages")
    for files in split.masks:
        def read(path):
            return cv2.resize(np.float32(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)), (48, 48),
                              interpolation=cv2.INTER_NEAREST) > 0.5
        mask = np.stack([read(path) for path in files.masks]).any(axis=0)
        ignore = (read(files.ignores[0]) if files.ignores else np.zeros_like(mask)) & ~mask
        loaded_mask, loaded_ignore = files.load(48)
        np.testing.assert_array_equal(loaded_mask, mask)
        np.testing.assert_array_equal(loaded_ignore, ignore)


def test_missing_or_unreadable_mask_names_the_file(tmp_path):
    tree = fabricate_tree(tmp_path, "OpenImages")
    localization = tree.metadata / "test" / "localization.txt"
    lines = localization.read_text().splitlines()
    lineno, (_, mask, _) = 2, lines[1].rsplit(",", 2)
    (tree.data / mask).unlink()
    expected = f"{localization}:{lineno}: mask file not found: {tree.data.resolve() / mask}"
    with pytest.raises(AnnotationError, match=re.escape(expected)):
        read_wsolevaluation_split(tree.metadata, "test", tree.data, "OpenImages")
    split = read_wsolevaluation_split(tree.metadata, "val", tree.data, "OpenImages")
    first = split.masks[0].masks[0]
    first.write_bytes(b"not a png")
    with pytest.raises(OSError, match=re.escape(f"cannot read mask {first} ({split.masks[0].where})")):
        split.masks[0].load(64)
    first.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(f"mask file not found: {first}")):
        split.masks[0].load(64)


def test_missing_split_folder_and_ground_truth_are_named(tmp_path):
    tree = fabricate_tree(tmp_path, "CUB")
    shutil.rmtree(tree.metadata / "val")
    with pytest.raises(FileNotFoundError, match=re.escape(f"split folder not found: {tree.metadata / 'val'}")):
        read_wsolevaluation_split(tree.metadata, "val", tree.data, "CUB")
    with pytest.raises(FileNotFoundError, match="point --metadata-root at the folder above it"):
        read_wsolevaluation_split(tree.metadata / "test", "val", tree.data, "CUB")
    (tree.metadata / "test" / "localization.txt").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tree.metadata / 'test' / 'localization.txt'} not found")):
        read_wsolevaluation_split(tree.metadata, "test", tree.data, "CUB")
    with pytest.raises(ValueError, match="split must be one of"):
        read_wsolevaluation_split(tree.metadata, "trainval", tree.data, "CUB")


def wsol_config(*argv):
    return train_config(train_parser().parse_args(["--dataset", "wsolevaluation", "--data-root", "d", *argv]))


@pytest.mark.parametrize("folder, preset", [("metadata/CUB", "cub"), ("metadata/ILSVRC/", "imagenet"),
                                            ("x/openimages", "openimages")])
def test_the_preset_follows_the_metadata_folder_name(folder, preset):
    cfg = wsol_config("--metadata-root", folder)
    expected = PRESETS[preset]
    assert (cfg.data.batch_size, cfg.optim.epochs, cfg.optim.milestones, cfg.loss.alpha, cfg.loss.beta) == (
        expected.batch_size, expected.epochs["early"], list(expected.milestones), expected.alpha, expected.beta)
    assert cfg.data.metadata_dataset in ("CUB", "ILSVRC", "OpenImages")  # resolved and saved with the run


def test_an_explicit_metadata_dataset_wins_and_an_unknown_folder_is_refused(capsys):
    cfg = wsol_config("--metadata-root", "meta/birds", "--metadata-dataset", "ILSVRC")
    assert (cfg.data.metadata_dataset, cfg.data.batch_size) == ("ILSVRC", PRESETS["imagenet"].batch_size)
    assert train_main(["--dataset", "wsolevaluation", "--data-root", "d", "--metadata-root", "meta/birds"]) == 2
    assert "cannot tell which dataset --metadata-root meta/birds describes" in capsys.readouterr().out
    assert train_main(["--dataset", "wsolevaluation", "--data-root", "d"]) == 2
    assert "needs --metadata-root" in capsys.readouterr().out
    assert train_main(["--dataset", "cub", "--data-root", "d", "--metadata-root", "metadata/CUB"]) == 2
    assert "are for --dataset wsolevaluation" in capsys.readouterr().out


def test_run_splits_are_the_metadata_folders(tmp_path):
    tree = fabricate_tree(tmp_path, "CUB")
    cfg = wsol_config("--metadata-root", str(tree.metadata), "--data-root", str(tree.data))
    for name in ("train", "val", "test"):
        split = load_data_split(cfg, name)
        assert [p.relative_to(tree.data.resolve()).as_posix() for p in split.image_paths] == tree.ids[name]
    cfg.model.num_classes = 5  # a trained model's class count: labels must fit, names cover all
    assert load_data_split(cfg, "test").class_names == ["0", "1", "2", "3", "4"]
    cfg.data.val_fraction = 0.25
    with pytest.raises(ValueError, match="own validation split"):
        load_data_split(cfg, "val")


def test_a_mask_split_is_evaluated_by_pxap_and_classification(openimages):
    split = read_wsolevaluation_split(openimages.metadata, "test", openimages.data, "OpenImages")
    torch.manual_seed(0)
    model = MobileNetBAS(split.num_classes, 0.25)
    settings = engine.EvalSettings(norm="minmax", protocol="both", sweep_step=0.05)
    options = dict(image_size=64, resize=73, batch_size=4, loader="torch")
    result = engine.evaluate(model, split, settings, **options)
    assert result["images"] == len(split) and 0 <= result["pxap"] <= 100
    assert {"top1_cls", "top5_cls"} <= set(result) and not {"gt_known", "maxboxacc"} & set(result)
    # the same PxAP as wsolevaluation's MaskEvaluator from the maps and masks directly
    dataset = WSOLDataset(split, train=False, image_size=64, resize=73, eval_protocol="wsolevaluation")
    images = torch.stack([dataset[i][0] for i in range(len(split))])
    _, maps = engine.localization_maps(model.eval(), normalize_pixels(images), torch.from_numpy(split.labels))
    counts = ReferencePxAPCounts(metrics.default_thresholds(0.05))
    masks, ignore = zip(*(files.load(64) for files in split.masks))
    counts.update(eval_ops.normalize(maps, "minmax"), torch.from_numpy(np.stack(masks)),
                  torch.from_numpy(np.stack(ignore)))
    assert result["pxap"] == pytest.approx(counts.summary()["pxap"], abs=1e-4)
    rows = engine.normalization_sweep_on_masks(model, split, settings, ["minmax", "percentile:99"], **options)
    assert [row["norm"] for row in rows] == ["minmax", "percentile:99"]
    assert rows[0]["pxap"] == pytest.approx(result["pxap"], abs=1e-6)
    only = engine.normalization_sweep_on_masks(model, split, settings, ["minmax"], **options)  # evaluate --sweep --norm
    assert only == rows[:1]


@pytest.mark.parametrize("box_rule", metrics.BOX_RULES)
def test_maxboxacc_takes_the_box_rule_of_the_settings(tmp_path, box_rule):
    tree = fabricate_tree(tmp_path, "CUB")
    split = read_wsolevaluation_split(tree.metadata, "test", tree.data, "CUB")
    torch.manual_seed(0)
    model = MobileNetBAS(split.num_classes, 0.25)
    settings = engine.EvalSettings(norm="minmax", protocol="maxboxacc", sweep_step=0.05, box_rule=box_rule)
    result = engine.evaluate(model, split, settings, image_size=64, resize=64, batch_size=4, loader="torch")
    dataset = WSOLDataset(split, train=False, image_size=64, resize=64, eval_protocol="wsolevaluation")
    images, labels, boxes = zip(*((*dataset[i][:2], torch.from_numpy(dataset.eval_boxes(i))) for i in range(len(split))))
    _, maps = engine.localization_maps(model.eval(), normalize_pixels(torch.stack(images)), torch.tensor(labels))
    counts = metrics.MaxBoxAccCounts(metrics.default_thresholds(0.05))
    counts.update(*metrics.threshold_sweep_ious(eval_ops.normalize(maps, "minmax"), list(boxes), counts.thresholds,
                                                box_rule=box_rule))
    assert result["maxboxacc"] == counts.summary()["maxboxacc"]
    assert result["maxboxaccv2"] == counts.summary()["maxboxaccv2"]
    assert result["settings"]["box_rule"] == box_rule
