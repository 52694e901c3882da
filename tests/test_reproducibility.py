"""Same command, same result on one machine: a 2-epoch run done twice gives bit-identical
checkpoints and logs (times aside), with the DALI and the torch loader, on 1 and on 2 processes;
``--deterministic`` switches on deterministic algorithms and keeps float atomics out."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from kernel_testing import EXACT_RUN_FLAGS

from wsol_fast import kernels, ops
from wsol_fast.checkpoint import load_checkpoint
from wsol_fast.commands.train import train_config, train_parser
from wsol_fast.engine.distributed import LAUNCHER_VARIABLES, free_port
from wsol_fast.engine.run import run_training

ROOT = Path(__file__).resolve().parent.parent
DEEPSPEED = Path(sys.executable).parent / "deepspeed"
TINY = ["--synthetic-classes", "3", "--synthetic-train-per-class", "8", "--synthetic-test-per-class", "1",
        "--synthetic-image-size", "48", "--image-size", "48", "--batch-size", "4", "--width", "0.25",
        "--workers", "2", "--epochs", "2", "--lr", "0.01"]
TIMES = ("images_per_s", "seconds")


def environment() -> dict:
    return {**{k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}, "DS_ACCELERATOR": "cpu",
            "OMP_NUM_THREADS": "1"}


def train(root: Path, out: str, processes: int, *extra) -> Path:
    """One training run (in this process, or 2 under the ``deepspeed`` launcher); its stage folder."""
    args = [*TINY, "--data-root", str(root / "data"), "--out", str(root / out), *extra]
    if processes == 1:
        run_training(train_config(train_parser().parse_args(args)))
        return root / out / "early"
    launcher = [str(DEEPSPEED), "--num_gpus", str(processes), "--master_port", str(free_port())]
    result = subprocess.run([*launcher, "launch/train.py", *args], cwd=ROOT, env=environment(), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return root / out / "early"


def assert_same_run(first: Path, second: Path) -> None:
    a, b = load_checkpoint(first / "checkpoint.pt"), load_checkpoint(second / "checkpoint.pt")
    assert a["model"].keys() == b["model"].keys()
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    logs = [[{k: v for k, v in json.loads(line).items() if k not in TIMES}
             for line in (run / "log.jsonl").read_text().splitlines()] for run in (first, second)]
    assert len(logs[0]) == 2 and logs[0] == logs[1]


@pytest.mark.parametrize("processes, loader", [(1, "dali"), (1, "torch"),
                                               pytest.param(2, "torch", marks=pytest.mark.skipif(
                                                   not DEEPSPEED.exists(), reason="no deepspeed launcher"))])
def test_the_same_command_twice_gives_identical_checkpoints_and_logs(tmp_path, processes, loader):
    first = train(tmp_path, "first", processes, "--loader", loader, *EXACT_RUN_FLAGS)
    second = train(tmp_path, "second", processes, "--loader", loader, *EXACT_RUN_FLAGS)
    assert_same_run(first, second)


def test_deterministic_mode_runs_and_is_saved_with_the_run(tmp_path):
    first = train(tmp_path, "first", 1, "--loader", "torch", "--deterministic")
    assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
    assert json.loads((first / "config.json").read_text())["run"]["deterministic"] is True
    assert_same_run(first, train(tmp_path, "second", 1, "--loader", "torch", "--deterministic"))


@pytest.mark.parametrize("forced", ["", "triton"])
def test_deterministic_algorithms_keep_the_class_sums_off_float_atomics(monkeypatch, forced):
    """Deterministic runs add class sums with the reference; forcing the atomic kernel then is
    refused with the reason, never run."""
    monkeypatch.setenv("WSOL_FAST_OPS", forced)
    monkeypatch.setattr(kernels, "accumulate_class_sums", lambda *args: pytest.fail("the atomic kernel ran"))
    sums, counts = torch.zeros(3, 4, 4), torch.zeros(3, dtype=torch.int64)
    maps, labels = torch.rand(5, 4, 4), torch.tensor([0, 2, 2, 1, 0])
    torch.use_deterministic_algorithms(True)
    try:
        if forced:
            with pytest.raises(RuntimeError, match="deterministic algorithms are on"):
                ops.accumulate_class_sums(sums, counts, maps, labels)
            return
        ops.accumulate_class_sums(sums, counts, maps, labels)
    finally:
        torch.use_deterministic_algorithms(False)
    torch.testing.assert_close(sums[2], maps[1] + maps[2])
    assert counts.tolist() == [2, 1, 2]
