"""``wsol_fast.probe`` / ``launch/probe_background.py``: box masks on the feature grid, dilation,
r = 1 exactly when nothing is masked (the background branch is the main branch then), the
model's BatchNorm statistics untouched, and the command's table and JSON."""
import json
import runpy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from test_localize import write_checkpoint
from wsol_fast.config import TrainConfig
from wsol_fast.data import WSOLDataset
from wsol_fast.data import load_data_split
from wsol_fast.models.restore import model_from_checkpoint
from wsol_fast.probe import box_masks, dilate, probe_background

ROOT = Path(__file__).resolve().parents[1]


def test_box_masks_mark_the_cells_whose_centres_are_inside():
    boxes = {0: np.array([[8.0, 16.0, 24.0, 40.0]]), 1: np.array([[0.0, 0.0, 8.0, 8.0], [56.0, 56.0, 64.0, 64.0]])}
    dataset = SimpleNamespace(image_size=64, eval_boxes=lambda i: boxes[i])
    masks = box_masks(dataset, [0, 1], side=8)  # 8-pixel cells, centres at 4, 12, ...
    expected = torch.zeros(2, 1, 8, 8)
    expected[0, 0, 2:5, 1:3] = 1
    expected[1, 0, 0, 0] = expected[1, 0, 7, 7] = 1
    assert torch.equal(masks, expected)
    grown = dilate(expected, 1)
    assert torch.equal(grown[1, 0, :2, :2], torch.ones(2, 2)) and grown[1, 0, 3, 3] == 0
    assert torch.equal(dilate(expected, 0), expected)


def test_probe_ratios_and_untouched_statistics(tmp_path, tiny_synthetic_root):
    checkpoint = write_checkpoint(tmp_path / "ck.pt", tiny_synthetic_root)
    model, state = model_from_checkpoint(checkpoint)
    cfg = TrainConfig.from_dict(state["config"])
    dataset = WSOLDataset(load_data_split(cfg, "train"), train=False, image_size=64, resize=73)
    before = {name: buffer.clone() for name, buffer in model.named_buffers()}
    results = {row.name: row for row in probe_background(model, dataset, list(range(6)))}
    assert list(results)[:3] == ["model's foreground map", "nothing", "ground-truth boxes"]
    assert abs(results["nothing"].mean_ratio - 1) < 1e-5 and results["nothing"].area == 0
    assert results["everything"].area == 1
    areas = [results[name].area for name in ("ground-truth boxes", "boxes + 1 cell", "boxes + 2 cells")]
    assert 0 < areas[0] < areas[1] < areas[2] <= 1
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, before[name]), name
    running = {row.name: row for row in probe_background(model, dataset, list(range(6)), bn="running")}
    assert running["ground-truth boxes"].mean_ratio != results["ground-truth boxes"].mean_ratio


def test_command_prints_and_writes_json(tmp_path, tiny_synthetic_root, capsys):
    checkpoint = write_checkpoint(tmp_path / "ck.pt", tiny_synthetic_root)
    main = runpy.run_path(str(ROOT / "launch/probe_background.py"))["main"]
    out = tmp_path / "probe.json"
    assert main(["--checkpoint", str(checkpoint), "--images", "4", "--out", str(out)]) == 0
    assert "S_bg / S on 4 train images" in capsys.readouterr().out
    rows = json.loads(out.read_text())
    assert [row["name"] for row in rows][-1] == "everything" and len(rows) == 7
    assert main(["--checkpoint", str(tmp_path / "missing.pt")]) == 1
