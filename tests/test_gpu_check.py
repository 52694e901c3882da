"""``benchmarks/gpu_check.py --dry-run``: every part of the GPU check runs at tiny sizes on the CPU,
so the script a GPU session runs in one call cannot rot."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import gpu_check  # noqa: E402

from wsol_fast.engine import distributed  # noqa: E402


def test_gpu_check_dry_run(tmp_path):
    """Also from a process that holds a process group (its rendezvous port): the check's runs
    must not inherit it."""
    distributed.init_process_group()
    report = gpu_check.main(["--dry-run", "--out", str(tmp_path)])
    assert set(report["parts"]) == set(gpu_check.PARTS)
    rows = gpu_check.summary_rows(report["parts"])
    assert [status for _, status, _ in rows] == ["ok"] * len(gpu_check.PARTS), (tmp_path / "gpu_check.md").read_text()
    assert json.loads((tmp_path / "gpu_check.json").read_text())["parts"].keys() == report["parts"].keys()
    assert "| pipeline | ok |" in (tmp_path / "gpu_check.md").read_text()
    kernels = report["parts"]["kernels"]["report"]["rows"]
    assert {row["op"] for row in kernels} == {"foreground_epilogue", "background_product", "guided_score",
                                              "accumulate_class_sums", "mean_map_l1"}
    assert all(row["max_abs_error_vs_eager"] < 0.1 for row in kernels)
    assert report["parts"]["deepspeed"]["epochs"][0]["epoch"] == 1
    assert report["parts"]["eval_ops"]["maps"] == 24 and report["parts"]["eval_ops"]["boxes_shape"][0] == 8
