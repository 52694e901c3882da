"""Pictures: the jet colormap, overlays and boxes, the evaluation grid (direct and through
``evaluate.py --save-vis``) and the training curves read from JSON-lines logs."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from test_localize import write_checkpoint
from wsol_fast.commands.evaluate import evaluate_main
from wsol_fast.drawing import GT_COLOR, PRED_COLOR, colorize, draw_box, overlay_heatmap, render_tile
from wsol_fast.visualize import plot_training_curves, save_eval_grid, training_curves


def is_picture(pixels: np.ndarray, colors: int = 50) -> bool:
    """Not blank: varying pixels and several distinct colors."""
    return pixels.std() > 5 and len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) >= colors


def test_jet_colormap_runs_blue_green_red():
    values = np.array([0.0, 1.0, -3.0, 7.0, np.nan])
    assert colorize(values).tolist() == [[0, 0, 128], [128, 0, 0], [0, 0, 128], [128, 0, 0], [0, 0, 128]]
    ramp = colorize(np.linspace(0, 1, 1001)).astype(int)
    assert ramp.shape == (1001, 3) and colorize(np.zeros((3, 5))).shape == (3, 5, 3)
    assert len(np.unique(ramp, axis=0)) > 200
    dominant = ramp.argmax(axis=1)
    assert (dominant[:300] == 2).all() and (dominant[450:551] == 1).all() and (dominant[700:] == 0).all()


def test_overlay_blends_the_resized_heat_map():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (30, 45, 3), dtype=np.uint8))
    heat = rng.random((7, 9), dtype=np.float32)
    assert overlay_heatmap(image, heat, alpha=0.0).tobytes() == image.tobytes()
    full = np.asarray(overlay_heatmap(image, torch.from_numpy(heat), alpha=1.0))
    resized = np.asarray(Image.fromarray(heat).resize((45, 30), Image.BILINEAR))
    assert full.shape == (30, 45, 3) and np.array_equal(full, colorize(resized))
    half = np.asarray(overlay_heatmap(image, heat), dtype=np.int32)
    assert np.abs(half - (np.asarray(image, np.int32) + full) / 2).max() <= 1
    with pytest.raises(ValueError, match=r"expected \(h, w\)"):
        overlay_heatmap(image, heat[None])


def test_boxes_are_drawn_on_their_edges_with_exclusive_maxima():
    image = Image.new("RGB", (40, 30), (0, 0, 0))
    draw_box(image, [5, 4, 25, 20], PRED_COLOR, width=1)
    pixels = np.asarray(image)
    assert tuple(pixels[4, 10]) == PRED_COLOR and tuple(pixels[19, 10]) == PRED_COLOR
    assert tuple(pixels[10, 5]) == PRED_COLOR and tuple(pixels[10, 24]) == PRED_COLOR
    assert not pixels[5:19, 6:24].any() and not pixels[20:].any() and not pixels[:, 25:].any()
    tile = np.asarray(render_tile(Image.new("RGB", (100, 50), (90, 90, 90)), 64, gt_boxes=[[0, 0, 100, 50]]))
    assert tile.shape == (64, 64, 3) and (tile[:15] == 255).all() and (tile[-15:] == 255).all(), "letterboxed"
    assert tuple(tile[16, 30]) == GT_COLOR and tuple(tile[32, 30]) == (90, 90, 90)


def test_eval_grid_has_a_column_per_checkpoint(tmp_path, tiny_synthetic_root):
    early = write_checkpoint(tmp_path / "early.pt", tiny_synthetic_root, seed=1,
                             eval_settings={"norm": "percentile:99", "threshold": 0.3, "method": "bas"})
    cam = write_checkpoint(tmp_path / "cam.pt", tiny_synthetic_root, "cam", seed=2)
    out = save_eval_grid([cam, early], "test", 3, tmp_path / "vis/grid.png", tile=64)
    grid = np.asarray(Image.open(out).convert("RGB"))
    # 3 columns of 64 px tiles with 6 px gaps; 18 px of titles, then rows of tile + 14 px caption + gap.
    assert grid.shape == (18 + 6 + 3 * (64 + 14 + 6), 3 * (64 + 6) + 6, 3)
    assert is_picture(grid)
    for column in range(3):
        tile = grid[24:88, 6 + column * 70: 70 + column * 70]
        assert is_picture(tile), f"column {column} is blank"
        assert (tile == GT_COLOR).all(axis=2).any(), f"column {column} lacks the ground-truth box"
        assert column == 0 or (tile == PRED_COLOR).all(axis=2).any(), f"column {column} lacks the predicted box"
    everything = save_eval_grid([early], "test", 100, tmp_path / "all.png", titles=["early"], map_class="top1", tile=32)
    assert Image.open(everything).size[1] == 18 + 6 + 8 * (32 + 14 + 6), "n capped at the 8 test images"
    with pytest.raises(ValueError, match="2 titles for 1 checkpoints"):
        save_eval_grid([early], "test", 2, tmp_path / "x.png", titles=["a", "b"])


def test_evaluate_save_vis_writes_the_grid(tmp_path, tiny_synthetic_root):
    early = write_checkpoint(tmp_path / "early.pt", tiny_synthetic_root, seed=1)
    cam = write_checkpoint(tmp_path / "cam.pt", tiny_synthetic_root, "cam", seed=2)
    out = tmp_path / "eval/early.json"
    assert evaluate_main(["--checkpoint", str(early), "--out", str(out), "--save-vis", "2",
                          "--vis-checkpoints", str(cam), "--workers", "0"]) == 0
    grid = tmp_path / "eval/early_grid.png"
    assert json.loads(out.read_text())["vis"] == str(grid)
    assert Image.open(grid).size == (3 * (192 + 6) + 6, 24 + 6 + 2 * (192 + 19 + 6))
    assert is_picture(np.asarray(Image.open(grid).convert("RGB")))


def write_log(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def fake_logs(tmp_path):
    timing = {"lr": 0.001, "images_per_s": 80.0, "seconds": 1.0}
    early = [{"run": "early", "epoch": e, "loss": 3.0 - e / 2, "cls": 1.5 - e / 4, "fg": 1.0, "bg": 0.2,
              "area": 0.4, "top1": 30.0 + 10 * e, **timing} for e in (1, 2, 3)]
    late = [{"run": "late", "epoch": e, "loss": 1.4, "cls": 0.3, "fg": 0.5, "bg": 0.3, "area": 0.2,
             "avg": 0.1 * e, "top1": 80.0 + e, **timing} for e in (1, 2)]
    cam = [{"run": "cam", "epoch": e, "loss": 1.0 / e, "cls": 1.0 / e, "top1": 50.0, **timing} for e in (1, 2)]
    return [write_log(tmp_path / f"{r[0]['run']}/log.jsonl", r) for r in (early, late, cam)]


def test_training_curves_continue_late_after_early(tmp_path):
    curves, late_offset = training_curves(fake_logs(tmp_path))
    assert list(curves) == ["loss", "cls", "fg", "bg", "area", "avg", "top1"], "bookkeeping fields left out"
    assert late_offset == 3
    assert curves["loss"]["early"] == ([1, 2, 3], [2.5, 2.0, 1.5])
    assert curves["avg"] == {"late": ([4, 5], [0.1, 0.2])}
    assert curves["top1"]["cam"] == ([1, 2], [50.0, 50.0])
    assert training_curves(fake_logs(tmp_path)[1:])[1] == 0, "a late run alone starts at its own epoch 1"
    out = plot_training_curves(fake_logs(tmp_path), tmp_path / "png/curves.png")
    picture = np.asarray(Image.open(out).convert("RGB"))
    assert picture.shape == (660, 1600, 3), "4 x 2 panels of 4 x 3 inches at 100 dpi, plus the title"
    assert is_picture(picture)


def test_bad_logs_name_the_file_and_line(tmp_path):
    log = write_log(tmp_path / "log.jsonl", [{"run": "early", "epoch": 1, "loss": 1.0}])
    log.write_text(log.read_text() + "{broken\n")
    with pytest.raises(ValueError, match=r"log\.jsonl:2: not a JSON object"):
        plot_training_curves([log], tmp_path / "c.png")
    log.write_text('{"loss": 1.0}\n')
    with pytest.raises(ValueError, match=r"log\.jsonl:1: expected a JSON object with an 'epoch'"):
        training_curves([log])
    log.write_text("\n")
    with pytest.raises(ValueError, match="no records"):
        training_curves([log])
    with pytest.raises(FileNotFoundError, match="training log not found"):
        training_curves([tmp_path / "missing.jsonl"])
    assert not (tmp_path / "c.png").exists()
