"""Smoke test of ``benchmarks/throughput.py``: every phase and path on a tiny CPU configuration
(one thread, so a loaded CI machine cannot stall it), JSON fields present and positive."""
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import throughput  # noqa: E402

PHASES = ("early", "late", "meanmap", "eval")
PATHS = ("fused", "reference", "baseline")


def test_throughput_tiny_config(tmp_path):
    out = tmp_path / "throughput.json"
    threads = torch.get_num_threads()
    report = throughput.main(["--device", "cpu", "--batch-size", "2", "--image-size", "48", "--classes", "5",
                              "--width", "0.25", "--loader", "memory", "--steps", "1", "--warmup", "1",
                              "--repeats", "1", "--threads", "1", "--out", str(out)])
    assert torch.get_num_threads() == threads, "the benchmark must restore the thread count"
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert report["matmul_peak_tflops"] > 0
    rows = {(row["phase"], row["path"]): row for row in report["rows"]}
    assert set(rows) == {(phase, path) for phase in PHASES for path in PATHS}
    for (phase, path), row in rows.items():
        for field in ("images_per_s", "step_ms", "flops_per_image", "tflops", "vs_baseline", "vs_reference"):
            assert row[field] > 0, (phase, path, field)
        assert row["peak_memory_mb"] >= 0 and row["memory_kind"].startswith("cpu-")
        assert 0 <= row["data_wait_share"] < 1
        assert row["stages_ms"]["forward"] > 0
        if phase in ("early", "late"):
            assert row["stages_ms"]["backward"] > 0 and row["stages_ms"]["optimizer"] > 0
        else:
            assert row["stages_ms"]["post"] > 0 and row["stages_ms"]["backward"] == 0
    # The label-gathered generator and copy-free background branch do less arithmetic.
    assert rows["early", "fused"]["flops_per_image"] < rows["early", "baseline"]["flops_per_image"]
    assert rows["early", "baseline"]["vs_baseline"] == 1.0


def test_sizes_follow_the_device_unless_given(capsys):
    args = throughput.parse_args(["--device", "cpu", "--classes", "7"])
    assert args.classes == 7
    for name, value in throughput.SIZES["cpu"].items():
        if name != "classes":
            assert getattr(args, name) == value, name
    assert "small sizes chosen" in capsys.readouterr().out
    assert throughput.SIZES["cuda"]["classes"] == 200 and throughput.SIZES["cuda"]["width"] == 1.0
