"""``wsol-fast evaluate-maps`` on tiny fabricated wsolevaluation splits: the JSON against metrics
worked out by hand and computed directly, both map layouts (nested ``.npy`` folder, ``.npz``),
predictions, and bad input as one ``error:`` line naming the culprit."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from wsol_fast import metrics
from wsol_fast.cli import main
from wsol_fast.commands import evaluate_maps
from wsol_fast.commands.evaluate_maps import boxes_at_map_size
from wsol_fast.data import resize_boxes

ROOT = Path(__file__).resolve().parent.parent
# image id, label, (width, height), GT box (x0, y0, x1, y1) in the image's pixels
IMAGES = [("test/a/one.jpg", 0, (40, 20), (8, 4, 27, 15)),
          ("test/a/two.jpg", 1, (40, 20), (0, 0, 19, 9)),
          ("test/b/three.jpg", 0, (30, 30), (3, 3, 17, 20)),
          ("test/b/four.jpg", 1, (40, 20), (20, 10, 39, 19))]
MAP_SHAPES = [(10, 20), (10, 20), (30, 30), (10, 20)]  # (H, W): half the image's size, or the image's


def piped_environment() -> dict:
    """This environment without the terminal's size, as CI and batch jobs run commands."""
    return {name: value for name, value in os.environ.items() if name not in ("COLUMNS", "LINES")}


def write_split(root: Path) -> tuple[Path, Path]:
    """A metadata folder and its image root (empty files: only the sizes file is read)."""
    metadata, images = root / "metadata" / "test", root / "images"
    metadata.mkdir(parents=True)
    for image_id, *_ in IMAGES:
        (images / image_id).parent.mkdir(parents=True, exist_ok=True)
        (images / image_id).touch()
    tables = {"image_ids.txt": [i for i, *_ in IMAGES],
              "class_labels.txt": [f"{i},{label}" for i, label, *_ in IMAGES],
              "image_sizes.txt": [f"{i},{w},{h}" for i, _, (w, h), _ in IMAGES],
              "localization.txt": [f"{i},{','.join(map(str, box))}" for i, *_, box in IMAGES]}
    for name, lines in tables.items():
        (metadata / name).write_text("\n".join(lines) + "\n")
    return metadata, images


def indicator_maps() -> dict[str, np.ndarray]:
    """Maps equal to their GT box's indicator (scaled to the map), except the last image's, which
    lights a region away from its box: 3 of 4 images localized at every threshold."""
    maps = {}
    for (image_id, _, size, box), shape in zip(IMAGES, MAP_SHAPES):
        x0, y0, x1, y1 = boxes_at_map_size(np.array([box], dtype=np.float32), size, shape)[0].astype(int)
        scoremap = np.zeros(shape)
        scoremap[y0:y1 + 1, x0:x1 + 1] = 1.0
        maps[image_id] = scoremap
    maps[IMAGES[-1][0]] = np.flip(maps[IMAGES[-1][0]]).copy()  # box in the bottom-right -> top-left
    return maps


def save_folder(maps: dict[str, np.ndarray], folder: Path) -> Path:
    """wsolevaluation's layout: ``folder / (image_id + ".npy")``, nested as the ids."""
    for image_id, scoremap in maps.items():
        (folder / image_id).parent.mkdir(parents=True, exist_ok=True)
        np.save(folder / (image_id + ".npy"), scoremap)
    return folder


def run(capsys, *args) -> tuple[int, str]:
    status = main(["evaluate-maps", *map(str, args)])
    return status, capsys.readouterr().out


def evaluate(capsys, tmp_path, maps, *args) -> dict:
    metadata, images = write_split(tmp_path)
    out = tmp_path / "result.json"
    status, printed = run(capsys, "--maps", maps, "--metadata", metadata, "--data-root", images, "--out", out, *args)
    assert status == 0, printed
    return json.loads(out.read_text())


def test_boxes_follow_the_map_size_with_resize_boxes_truncation():
    boxes = np.array([[8, 4, 27, 15], [0, 0, 39, 19]], dtype=np.float32)
    assert boxes_at_map_size(boxes, (40, 20), (10, 20)).tolist() == [[4, 2, 13, 7], [0, 0, 19, 9]]
    np.testing.assert_array_equal(boxes_at_map_size(boxes, (40, 20), (224, 224)), resize_boxes(boxes, 40, 20, 224))
    np.testing.assert_array_equal(boxes_at_map_size(boxes, (40, 20), (20, 40)), boxes)


@pytest.mark.parametrize("box_rule", metrics.BOX_RULES)
def test_indicator_maps_in_a_nested_npy_folder_score_by_hand(capsys, tmp_path, box_rule):
    folder = save_folder({**indicator_maps(), "val/elsewhere.jpg": np.zeros((2, 2))}, tmp_path / "scoremaps")
    result = evaluate(capsys, tmp_path, folder, "--box-rule", box_rule)
    assert result["images"] == 4 and result["extra_maps"] == 1
    assert result["maxboxacc"] == 75.0 and result["maxboxacc_best_threshold"] == 0.0
    assert result["maxboxaccv2"] == 75.0  # the indicator boxes' IoU (about 0.78) clears every δ
    assert result["box_rule"] == box_rule and "top1_loc" not in result


def test_npz_keys_and_the_docstring_layout_give_the_same_result(capsys, tmp_path):
    maps = indicator_maps()
    np.savez(tmp_path / "maps.npz", **maps)
    from_npz = evaluate(capsys, tmp_path / "npz", tmp_path / "maps.npz")
    folder = tmp_path / "stems"
    for image_id, scoremap in maps.items():  # test/a/one.jpg -> test/a/one.npy
        (folder / image_id).parent.mkdir(parents=True, exist_ok=True)
        np.save((folder / image_id).with_suffix(".npy"), scoremap.astype(np.float16))
    from_stems = evaluate(capsys, tmp_path / "folder", folder)
    for name in ("maxboxacc", "maxboxacc_best_threshold", "maxboxaccv2", "images"):
        assert from_npz[name] == from_stems[name]
    assert from_npz["maxboxacc"] == 75.0 and from_npz["extra_maps"] == 0


@pytest.mark.parametrize("box_rule", metrics.BOX_RULES)
def test_graded_maps_match_the_metrics_computed_directly(capsys, tmp_path, box_rule):
    rng = np.random.default_rng(0)
    maps = {image_id: rng.random(shape) for (image_id, *_), shape in zip(IMAGES, MAP_SHAPES)}
    result = evaluate(capsys, tmp_path, save_folder(maps, tmp_path / "maps"), "--step", "0.05", "--box-rule", box_rule)
    counts = metrics.MaxBoxAccCounts(metrics.default_thresholds(0.05))
    for (image_id, _, size, box), shape in zip(IMAGES, MAP_SHAPES):
        gt = boxes_at_map_size(np.array([box], dtype=np.float32), size, shape)
        counts.update(*metrics.threshold_sweep_ious(torch.from_numpy(maps[image_id])[None], [torch.from_numpy(gt)],
                                                    counts.thresholds, box_rule=box_rule))
    expected = counts.summary()
    assert {name: result[name] for name in expected} == expected


def test_top5_predictions_give_loc_at_the_best_threshold(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(evaluate_maps, "SCORE_ROWS", 3)  # two chunks of score rows
    predictions = tmp_path / "predictions.txt"
    ranked = ["0 1 2 3 4", "0 1 2 3 4", "2 3 4 5 6", "1 0 2 3 4"]  # top-1 right: 1st, 4th; top-5: not the 3rd
    lines = [f"{i},{labels}" for (i, *_), labels in zip(IMAGES, ranked)] + ["val/other.jpg,1 2 3 4 5"]  # ignored
    predictions.write_text("\n".join(lines) + "\n")
    folder = save_folder(indicator_maps(), tmp_path / "maps")
    result = evaluate(capsys, tmp_path, folder, "--predictions", predictions)
    assert (result["top1_cls"], result["top5_cls"]) == (50.0, 75.0)
    assert (result["gt_known"], result["top1_loc"], result["top5_loc"]) == (75.0, 25.0, 50.0)
    assert result["loc_threshold"] == result["maxboxacc_best_threshold"]
    assert result["top1_loc_class_mean"] == 25.0  # class 0: 1 of 2, class 1: 0 of 2


def test_top1_predictions_leave_top5_out(capsys, tmp_path):
    predictions = tmp_path / "predictions.txt"
    predictions.write_text("".join(f"{i},{label}\n" for i, label, *_ in IMAGES))
    result = evaluate(capsys, tmp_path, save_folder(indicator_maps(), tmp_path / "maps"), "--predictions", predictions)
    assert (result["top1_cls"], result["gt_known"], result["top1_loc"]) == (100.0, 75.0, 75.0)
    assert not [name for name in result if name.startswith("top5")]


def write_mask_split(root: Path, rng: np.random.Generator) -> tuple[Path, Path, list[tuple[np.ndarray, np.ndarray]]]:
    """An OpenImages-style split of two images: 8 x 8 instance and ignore PNGs under ``root/masks``
    (the first image has two instances); returns the metadata, the mask root and each image's
    (mask, ignore) at 4 x 4 (nearest: every other pixel)."""
    metadata, images = write_split(root)
    ids = [image_id for image_id, *_ in IMAGES[:2]]
    (metadata / "image_ids.txt").write_text("\n".join(ids) + "\n")
    (metadata / "class_labels.txt").write_text("".join(f"{i},0\n" for i in ids))
    (metadata / "image_sizes.txt").unlink()
    lines, truth = [], []
    for number, image_id in enumerate(ids):
        pngs = {name: rng.random((8, 8)) > 0.6 for name in (["a", "b", "ignore"] if number == 0 else ["a", "ignore"])}
        for name, pixels in pngs.items():
            (root / "masks" / str(number)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels.astype(np.uint8) * 255).save(root / "masks" / str(number) / f"{name}.png")
        instances = [name for name in pngs if name != "ignore"]
        lines += [f"{image_id},{number}/{name}.png,{f'{number}/ignore.png' if k == 0 else ''}"
                  for k, name in enumerate(instances)]
        mask = np.any([pngs[name] for name in instances], axis=0)[::2, ::2]
        truth.append((mask, pngs["ignore"][::2, ::2] & ~mask))
    (metadata / "localization.txt").write_text("\n".join(lines) + "\n")
    return metadata, root / "masks", truth


def wsolevaluation_pxap(maps: list[np.ndarray], truth: list[tuple[np.ndarray, np.ndarray]], step: float) -> float:
    """wsolevaluation's MaskEvaluator, written out: histograms of the map values at mask pixels
    and at the pixels neither mask nor ignored, then the area under the precision-recall curve."""
    edges = np.append(metrics.default_thresholds(step), [1.0, 2.0, 3.0])
    true = sum(np.histogram(m[mask], bins=edges)[0] for m, (mask, _) in zip(maps, truth))
    false = sum(np.histogram(m[~mask & ~ignore], bins=edges)[0] for m, (mask, ignore) in zip(maps, truth))
    tp, fp = true[::-1].cumsum(), false[::-1].cumsum()
    with np.errstate(divide="ignore", invalid="ignore"):
        precision, recall = tp / (tp + fp), tp / true.sum()
    return float(100 * (precision[1:] * np.diff(recall))[(tp + fp)[1:] != 0].sum())


def test_a_mask_split_gives_wsolevaluations_pxap(capsys, tmp_path):
    rng = np.random.default_rng(1)
    metadata, mask_root, truth = write_mask_split(tmp_path, rng)
    ids = [image_id for image_id, *_ in IMAGES[:2]]
    maps = [rng.random((4, 4)).round(2) for _ in ids]
    folder = save_folder(dict(zip(ids, maps)), tmp_path / "maps")
    out = tmp_path / "pxap.json"
    status, printed = run(capsys, "--maps", folder, "--metadata", metadata, "--data-root", tmp_path / "images",
                          "--mask-root", mask_root, "--out", out)
    assert status == 0, printed
    result = json.loads(out.read_text())
    assert result["pxap"] == pytest.approx(wsolevaluation_pxap(maps, truth, 0.01), abs=1e-9)
    assert "maxboxacc" not in result and "pxap" in printed
    save_folder({i: mask.astype(np.float64) for i, (mask, _) in zip(ids, truth)}, tmp_path / "perfect")
    status, printed = run(capsys, "--maps", tmp_path / "perfect", "--metadata", metadata, "--data-root",
                          tmp_path / "images", "--mask-root", mask_root, "--out", out)
    assert status == 0 and json.loads(out.read_text())["pxap"] == pytest.approx(100.0)
    save_folder({ids[0]: np.zeros((4, 6)), ids[1]: maps[1]}, tmp_path / "oblong")
    status, printed = run(capsys, "--maps", tmp_path / "oblong", "--metadata", metadata, "--data-root",
                          tmp_path / "images", "--mask-root", mask_root)
    assert status == 1 and printed.startswith(f"error: map of image {ids[0]}: 4x6, but a mask split needs square")


@pytest.mark.parametrize("spoil, message", [
    (lambda maps: maps.pop("test/b/three.jpg"), "no map of image test/b/three.jpg"),
    (lambda maps: maps.__setitem__("test/a/two.jpg", np.full((10, 20), 1.5)),
     "map of image test/a/two.jpg ({maps}/test/a/two.jpg.npy): values must lie in [0, 1], found min 1.5, max 1.5"),
    (lambda maps: maps.__setitem__("test/a/one.jpg", np.full((10, 20), np.nan)), "test/a/one.jpg.npy): 200 non-finite"),
    (lambda maps: maps.__setitem__("test/a/one.jpg", np.zeros((1, 10, 20))), "expected a non-empty 2-D (H, W) array"),
    (lambda maps: maps.__setitem__("test/a/one.jpg", np.zeros((10, 20), dtype=np.uint8)), "got uint8"),
    (lambda maps: maps.__setitem__("test/a/one.jpg", np.array([[print]], dtype=object)),  # a pickle: never loaded
     "test/a/one.jpg.npy): Object arrays cannot be loaded when allow_pickle=False"),
])
def test_a_bad_map_is_one_error_line_naming_its_image(capsys, tmp_path, spoil, message):
    maps = indicator_maps()
    spoil(maps)
    folder = save_folder(maps, tmp_path / "maps")
    metadata, images = write_split(tmp_path)
    status, printed = run(capsys, "--maps", folder, "--metadata", metadata, "--data-root", images)
    assert status == 1
    assert printed.startswith("error: ") and message.format(maps=folder) in printed, printed


@pytest.mark.parametrize("lines, message", [
    (["test/a/one.jpg 0"], "predictions.txt:1: expected ID,LABEL"),
    (["test/a/one.jpg,0", "test/a/two.jpg,zero"], "predictions.txt:2: expected ID,LABEL"),
    (["test/a/one.jpg,0 1 2"], "predictions.txt:1: expected ID,LABEL"),
    (["test/a/one.jpg,0 1 2 3 3"], "predictions.txt:1: a label is repeated"),
    (["test/a/one.jpg,0", "test/a/two.jpg,0 1 2 3 4"], "predictions.txt:2: 5 label(s), earlier lines give 1"),
    (["test/a/one.jpg,0", "test/a/one.jpg,1"], "predictions.txt:2: second prediction for test/a/one.jpg"),
    (["test/a/one.jpg,0"], "no prediction for 3 image(s) of the split"),
])
def test_a_bad_predictions_file_is_one_error_line_naming_the_line(capsys, tmp_path, lines, message):
    predictions = tmp_path / "predictions.txt"
    predictions.write_text("\n".join(lines) + "\n")
    metadata, images = write_split(tmp_path)
    status, printed = run(capsys, "--maps", save_folder(indicator_maps(), tmp_path / "maps"), "--metadata", metadata,
                          "--data-root", images, "--predictions", predictions)
    assert status == 1 and printed.startswith("error: ") and message in printed, printed


def test_piped_output_keeps_the_table_whole(tmp_path):
    folder = save_folder(indicator_maps(), tmp_path / ("scoremaps-of-a-method-with-a-long-name-" * 4))
    metadata, images = write_split(tmp_path)
    done = subprocess.run([sys.executable, "launch/evaluate_maps.py", "--maps", folder, "--metadata", metadata,
                           "--data-root", images], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=300, env=piped_environment())
    assert done.returncode == 0, done.stdout
    assert "…" not in done.stdout and f"{folder} on {metadata}" in done.stdout
    assert "75.00" in done.stdout
