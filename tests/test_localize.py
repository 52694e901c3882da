"""``wsol-fast localize``: records, COCO detections and overlays on new images of odd sizes,
boxes recomputed with the reference ops in original pixels, saved settings and overrides, and
every bad input (undecodable image, missing path, malformed annotation, bad flags)."""
import json
from importlib.metadata import entry_points

import numpy as np
import pytest
import torch
from PIL import Image

from wsol_fast.checkpoint import atomic_save
from wsol_fast.cli import COMMANDS, main
from wsol_fast.commands.train import train_config, train_parser
from wsol_fast.data import load_rgb, resize_only_transform
from wsol_fast.engine.evaluate import localization_maps
from wsol_fast.models.restore import model_from_checkpoint
from wsol_fast.commands.localize import find_images, localize_main, overlay_names, read_annotations, read_class_names
from wsol_fast.models import MobileNetBAS
from wsol_fast.ops import eval_reference
from wsol_fast.drawing import GT_COLOR, PRED_COLOR

CLASSES = 4  # conftest's tiny synthetic set


def untrained_model(seed: int) -> MobileNetBAS:
    """A width-0.25 model with random weights whose BatchNorm statistics come from one batch of
    noise, so its activations, scores and maps are far from constant."""
    torch.manual_seed(seed)
    model = MobileNetBAS(CLASSES, 0.25)
    for layer in model.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.momentum = None  # running statistics = those of the batch below
            layer.reset_running_stats()
    with torch.no_grad():
        model.train()(torch.randn(8, 3, 64, 64))
    return model.eval()


def write_checkpoint(path, data_root, method="bas", eval_settings=None, seed=0):
    """An untrained 64-px checkpoint for conftest's tiny synthetic set (config as train.py saves it)."""
    cfg = train_config(train_parser().parse_args([
        "--data-root", str(data_root), "--synthetic-classes", "4", "--synthetic-train-per-class", "3",
        "--synthetic-test-per-class", "2", "--synthetic-image-size", "64", "--image-size", "64",
        "--width", "0.25", "--workers", "0", "--method", method]))
    cfg.model.num_classes = CLASSES
    state = {"config": cfg.to_dict(), "run": "cam" if method == "cam" else "early",
             "model": untrained_model(seed).state_dict()}
    if eval_settings:
        state["eval_settings"] = eval_settings
    return atomic_save(state, path)


@pytest.fixture
def images(tmp_path, tiny_synthetic_root):
    """A folder of images of odd sizes and modes (nested), a non-image and an undecodable file."""
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (61, 97, 3), dtype=np.uint8)).save(folder / "wide.png")
    Image.fromarray(rng.integers(0, 256, (80, 50), dtype=np.uint8)).save(folder / "sub" / "tall.png")
    Image.fromarray(rng.integers(0, 256, (40, 40, 4), dtype=np.uint8), "RGBA").save(folder / "sub" / "wide.png")
    first = sorted((tiny_synthetic_root / "images").rglob("*.jpg"))[0]
    (folder / "bird.jpg").write_bytes(first.read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    (folder / "notes.txt").write_text("not an image")
    return folder


def run_localize(checkpoint, paths, out, *extra):
    return localize_main(["--checkpoint", str(checkpoint), *map(str, paths), "--out", str(out),
                          "--workers", "0", "--batch-size", "2", *map(str, extra)])


def test_records_coco_and_overlays(tmp_path, tiny_synthetic_root, images, capsys):
    checkpoint = write_checkpoint(tmp_path / "ck.pt", tiny_synthetic_root)
    annotations = tmp_path / "boxes.txt"
    annotations.write_text("sub/tall.png 5 6 40 70\nimages/wide.png,10,5,90,55\nwide.png 0 0 20 20\n"
                           "elsewhere.png 1 1 2 2\n")
    out = tmp_path / "out"
    assert run_localize(checkpoint, [images], out, "--annotations", annotations, "--overlay-max-side", "80") == 0
    result = json.loads((out / "localizations.json").read_text())
    log = capsys.readouterr().out
    assert "broken.jpg" in log and "1 annotation line(s) name no image" in log

    assert result["skipped"] == [{"path": str(images / "broken.jpg"), "error": result["skipped"][0]["error"]}]
    assert "cannot read image" in result["skipped"][0]["error"]
    records = {r["key"]: r for r in result["images"]}
    assert sorted(records) == ["bird.jpg", "sub/tall.png", "sub/wide.png", "wide.png"], "nothing else lost"
    sizes = {"bird.jpg": (64, 64), "sub/tall.png": (50, 80), "sub/wide.png": (40, 40), "wide.png": (97, 61)}
    names = read_class_names(tiny_synthetic_root / "classes.txt")
    for key, record in records.items():
        width, height = sizes[key]
        assert (record["width"], record["height"]) == (width, height)
        assert {"path", "top5", "box", "norm", "threshold", "map_class", "overlay"} <= set(record)
        assert (record["norm"], record["threshold"], record["map_class"]) == ("minmax", 0.5, "top1")
        probs = [entry["prob"] for entry in record["top5"]]
        assert len(probs) == CLASSES and probs == sorted(probs, reverse=True)
        assert sum(probs) == pytest.approx(1, abs=1e-5)
        assert all(entry["name"] == names[entry["class"]] for entry in record["top5"])
        x0, y0, x1, y1 = record["box"]
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        overlay = np.asarray(Image.open(out / record["overlay"]).convert("RGB"))
        scale = min(1.0, 80 / max(width, height))
        assert overlay.shape == (round(height * scale), round(width * scale), 3)
        assert overlay.std() > 10 and len(np.unique(overlay.reshape(-1, 3), axis=0)) > 50
        assert (overlay == PRED_COLOR).all(axis=2).any(), "predicted box drawn"
    assert records["sub/tall.png"]["gt_boxes"] == [[5, 6, 40, 70]]
    assert records["wide.png"]["gt_boxes"] == [[10, 5, 90, 55], [0, 0, 20, 20]], "both formats, both matches"
    assert 0 <= records["wide.png"]["iou"] <= 1 and "gt_boxes" not in records["bird.jpg"]
    tall = np.asarray(Image.open(out / records["sub/tall.png"]["overlay"]).convert("RGB"))
    assert (tall == GT_COLOR).all(axis=2).any(), "ground-truth box drawn"

    coco = json.loads((out / "detections_coco.json").read_text())
    assert [c["id"] for c in coco["categories"]] == [1, 2, 3, 4] and coco["categories"][0]["name"] == names[0]
    assert len(coco["images"]) == len(coco["annotations"]) == 4
    for image, detection in zip(coco["images"], coco["annotations"]):
        record = records[image["file_name"]]
        x0, y0, x1, y1 = record["box"]
        assert detection["image_id"] == image["id"] and (image["width"], image["height"]) == sizes[image["file_name"]]
        assert detection["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0])
        assert detection["category_id"] == record["top5"][0]["class"] + 1
        assert detection["score"] == record["top5"][0]["prob"]


@pytest.mark.parametrize("method", ["bas", "cam"])
def test_box_and_classes_match_the_reference_pipeline(tmp_path, tiny_synthetic_root, images, method):
    """Recompute each record from the image: wsolevaluation resize, model scores, the method's
    map, reference normalization and box, scaled to the original pixels."""
    checkpoint = write_checkpoint(tmp_path / "ck.pt", tiny_synthetic_root, method, seed=3)
    out = tmp_path / "out"
    assert run_localize(checkpoint, [images / "wide.png", images / "sub"], out, "--threshold", "0.6") == 0
    model, _ = model_from_checkpoint(checkpoint)
    model.eval()
    for record in json.loads((out / "localizations.json").read_text())["images"]:
        image = load_rgb(record["path"], 0)
        batch = resize_only_transform(64)(image)[None]
        probs = model(batch).score1.softmax(dim=1)[0]
        assert [e["class"] for e in record["top5"]] == probs.argsort(descending=True).tolist()
        torch.testing.assert_close(torch.tensor([e["prob"] for e in record["top5"]]),
                                   probs.sort(descending=True).values, atol=1e-6, rtol=0)
        _, maps = localization_maps(model, batch, None, method, "top1")
        box = eval_reference.largest_component_boxes(eval_reference.normalize(maps, "minmax"), [0.6])[0, 0]
        scale = torch.tensor([image.width / 64, image.height / 64] * 2, dtype=torch.float64)
        assert record["box"] == pytest.approx((box * scale).tolist(), abs=0.006)


def test_saved_settings_are_the_default_and_flags_override(tmp_path, tiny_synthetic_root, images):
    checkpoint = write_checkpoint(tmp_path / "ck.pt", tiny_synthetic_root,
                                  eval_settings={"norm": "percentile:97", "threshold": 0.35, "method": "bas"})
    out = tmp_path / "out"
    assert run_localize(checkpoint, [images / "wide.png"], out) == 0
    record = json.loads((out / "localizations.json").read_text())["images"][0]
    assert (record["norm"], record["threshold"]) == ("percentile:97", 0.35)
    assert run_localize(checkpoint, [images / "wide.png"], out, "--norm", "max", "--threshold", "0.7",
                        "--map-class", "topk:2") == 0
    record = json.loads((out / "localizations.json").read_text())["images"][0]
    assert (record["norm"], record["threshold"], record["map_class"]) == ("max", 0.7, "topk:2")


def test_nothing_decodable_exits_non_zero_and_lists_the_images(tmp_path, tiny_synthetic_root):
    checkpoint = write_checkpoint(tmp_path / "ck.pt", tiny_synthetic_root)
    folder = tmp_path / "bad"
    folder.mkdir()
    for name in ("a.jpg", "b.png"):
        (folder / name).write_bytes(b"garbage")
    assert run_localize(checkpoint, [folder], tmp_path / "out") == 1
    result = json.loads((tmp_path / "out/localizations.json").read_text())
    assert result["images"] == [] and [s["path"] for s in result["skipped"]] == [str(folder / "a.jpg"),
                                                                                   str(folder / "b.png")]


def test_bad_inputs_are_refused_with_a_clear_message(tmp_path, tiny_synthetic_root, images, capsys):
    checkpoint = write_checkpoint(tmp_path / "ck.pt", tiny_synthetic_root)
    out = tmp_path / "out"
    bad_annotations = tmp_path / "ann.txt"
    bad_annotations.write_text("wide.png 1 2 3 4\nwide.png 1 2 x 4\n")
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        ([images / "missing.png"], [], "no such image or folder"),
        ([empty], [], "no images"),
        ([images], ["--annotations", bad_annotations], "ann.txt:2: box coordinates are not numbers"),
        ([images], ["--annotations", tmp_path / "none.txt"], "annotation file not found"),
        ([images], ["--class-names", names], "has 4 classes, --class-names"),
    ]
    for paths, extra, message in cases:
        assert run_localize(checkpoint, paths, out, *extra) == 1, message
        assert message in capsys.readouterr().out.replace("\n", "")
    assert run_localize(checkpoint, [images], out, "--map-class", "gt") == 2  # flags that cannot go together
    assert "error: --map-class gt needs labels" in capsys.readouterr().out
    assert localize_main(["--checkpoint", str(tmp_path / "nope.pt"), str(images), "--out", str(out)]) == 1
    assert "checkpoint not found" in capsys.readouterr().out
    assert not out.exists(), "a refused run writes nothing"
    usage_errors = {("--batch-size", "0"): "must be a positive integer", ("--device", "gpu0"): "gpu0",
                    ("--map-class", "best"): "must be gt | top1 | topk:K | all, got 'best'",
                    ("--norm", "median"): "median", ("--threshold", "1.5"): "must be a number in [0, 1], got 1.5"}
    for flags, message in usage_errors.items():
        with pytest.raises(SystemExit) as exit_info:
            run_localize(checkpoint, [images], out, *flags)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_helpers_find_images_name_overlays_and_read_annotations(tmp_path, images):
    entries = find_images([images, images / "wide.png"])
    assert [e.key for e in entries] == ["bird.jpg", "broken.jpg", "sub/tall.png", "sub/wide.png", "wide.png"]
    assert overlay_names(entries) == ["bird.png", "broken.png", "tall.png", "wide.png", "wide-2.png"]
    annotations = tmp_path / "a.txt"
    annotations.write_text("\n/abs/none.png 1 2 3 4\nimages/sub/tall.png, 1, 2, 3, 4\nbird.jpg 1.5 2 3 4.25\n")
    boxes, unmatched = read_annotations(annotations, entries)
    assert boxes == {2: [[1, 2, 3, 4]], 0: [[1.5, 2, 3, 4.25]]} and unmatched == 1
    annotations.write_text("bird.jpg 1 2 3\n")
    with pytest.raises(ValueError, match=r"a\.txt:1: expected 'image x0 y0 x1 y1'"):
        read_annotations(annotations, entries)
    annotations.write_text("bird.jpg 5 2 3 4\n")
    with pytest.raises(ValueError, match=r"a\.txt:1: box needs x1 >= x0"):
        read_annotations(annotations, entries)


def test_console_script_routes_commands(tmp_path, tiny_synthetic_root, images, capsys):
    assert any(e.name == "wsol-fast" and e.value == "wsol_fast.cli:main" for e in entry_points(group="console_scripts"))
    checkpoint = write_checkpoint(tmp_path / "ck.pt", tiny_synthetic_root)
    assert main(["localize", "--checkpoint", str(checkpoint), str(images / "bird.jpg"), "--out",
                 str(tmp_path / "out"), "--workers", "0"]) == 0
    assert (tmp_path / "out/overlays/bird.png").is_file()
    assert main(["--help"]) == 0 and "{" + ",".join(COMMANDS) + "}" in capsys.readouterr().out
    assert "evaluate-maps" in COMMANDS
    assert main([]) == 2 and main(["fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().err


def test_link_loops_and_dangling_links_are_listed_as_skipped(tmp_path, tiny_synthetic_root):
    checkpoint = write_checkpoint(tmp_path / "ck.pt", tiny_synthetic_root)
    folder = tmp_path / "links"
    folder.mkdir()
    (folder / "loop_a.jpg").symlink_to(folder / "loop_b.jpg")
    (folder / "loop_b.jpg").symlink_to(folder / "loop_a.jpg")
    (folder / "dangling.png").symlink_to(folder / "gone.png")
    assert run_localize(checkpoint, [folder], tmp_path / "out") == 1
    result = json.loads((tmp_path / "out/localizations.json").read_text())
    assert [s["path"] for s in result["skipped"]] == [str(folder / name) for name in
                                                      ("dangling.png", "loop_a.jpg", "loop_b.jpg")]
