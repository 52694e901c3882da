"""Smoke test of ``benchmarks/pipeline.py``: the real training path (loader -> DeepSpeed engine ->
TrainStep) and the BAS-style pipeline on a tiny CPU configuration; fields present and sane."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import pipeline  # noqa: E402


@pytest.mark.parametrize("loader", ["torch", "dali"])
def test_pipeline_tiny_config(tmp_path, loader):
    out = tmp_path / "pipeline.json"
    report = pipeline.main(["--device", "cpu", "--classes", "3", "--width", "0.25", "--image-size", "48",
                            "--batch-size", "4", "--steps", "2", "--warmup", "1", "--repeats", "2", "--workers", "1",
                            "--synthetic-image-size", "64", "--loader", loader,
                            "--data-root", str(tmp_path / "data"), "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    for name in ("ours", "baseline"):
        row = report["rows"][name]
        assert row["images_per_s"] > 0 and 0 <= row["data_wait_fraction"] < 1
        assert all(row["stage_ms"][stage] > 0 for stage in ("data", "forward", "backward", "optimizer"))
        assert row["gflop_per_image"] > 0 and len(row["all_images_per_s"]) == 2
        assert row["images_per_s"] == max(row["all_images_per_s"])
    # the BAS-style step computes every class's map and copies the background modules: more FLOPs
    assert report["rows"]["baseline"]["gflop_per_image"] > report["rows"]["ours"]["gflop_per_image"]
    assert report["speedup_goal"] == pytest.approx(0.95 * report["rows"]["baseline"]["gflop_per_image"]
                                                   / report["rows"]["ours"]["gflop_per_image"])
