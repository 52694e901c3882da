"""``benchmarks/eval_ops.py``: the "model" kind of maps comes from a checkpoint's real
localization maps, and a tiny run of every path (OpenCV's when installed: it is a benchmark-only
dependency) writes its rows and JSON."""
import json
import sys
from pathlib import Path

import pytest
import torch

from wsol_fast.config import TrainConfig
from wsol_fast.data import WSOLDataset, normalize_pixels
from wsol_fast.engine.evaluate import localization_maps
from wsol_fast.data import load_data_split
from wsol_fast.models.restore import model_from_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import eval_ops  # noqa: E402
from test_localize import write_checkpoint  # noqa: E402


def test_model_maps_are_the_checkpoints_maps(tmp_path, tiny_synthetic_root):
    checkpoint = write_checkpoint(tmp_path / "ck.pt", tiny_synthetic_root)
    maps = eval_ops.model_maps(checkpoint, count=11, size=48)  # the tiny test split has 8 images
    assert maps.shape == (11, 48, 48) and maps.dtype == torch.float32
    assert torch.equal(maps[8:], maps[:3])  # repeated to the requested count
    model, state = model_from_checkpoint(checkpoint)
    split = load_data_split(TrainConfig.from_dict(state["config"]), "test")
    dataset = WSOLDataset(split, train=False, image_size=48, resize=48, eval_protocol="wsolevaluation")
    image, label, _ = dataset[5]
    with torch.no_grad():
        _, expected = localization_maps(model.eval(), normalize_pixels(image[None]), torch.tensor([label]))
    torch.testing.assert_close(maps[5], expected[0])
    assert float(maps.std()) > 0 and 0 < float(maps.min()) and float(maps.max()) < 1


@pytest.mark.parametrize("without_opencv", [False, True])
def test_tiny_run_writes_ratios(tmp_path, tiny_synthetic_root, monkeypatch, without_opencv):
    if without_opencv:
        monkeypatch.setattr(eval_ops, "cv2", None)
    checkpoint = write_checkpoint(tmp_path / "ck.pt", tiny_synthetic_root)
    out = tmp_path / "bench.json"
    monkeypatch.setattr(sys, "argv", ["eval_ops.py", "--size", "48", "--maps", "4", "--slow-maps", "2",
                                      "--thresholds", "10", "--min-seconds", "0", "--checkpoint",
                                      str(checkpoint), "--out", str(out)])
    eval_ops.main()
    report = json.loads(out.read_text())
    assert {row["maps_kind"] for row in report["rows"]} == {"smooth", "textured", "model"}
    for row in report["rows"]:
        assert row["maps_per_s"] > 0
        assert (row["vs_opencv"] > 0) if eval_ops.cv2 is not None else row["vs_opencv"] is None
        if row["path"].startswith("extension"):  # the contour rule is checked against OpenCV's loop
            checked = eval_ops.cv2 is not None or "contour rule" not in row["path"]
            assert row["boxes_equal_reference"] is (True if checked else None)
    for row in report["accumulate_rows"]:
        assert row["contour_counts_equal"] is True
