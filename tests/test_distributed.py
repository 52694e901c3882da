"""DeepSpeed-managed training under the real ``deepspeed`` launcher, 2 CPU processes (gloo).

* 2 processes with --sync-bn, started as two ``--no_ssh`` nodes (the multi-node path of
  docs/distributed.md), match 1 process with the same global batch (8 = 4 x 2) after 2 steps of
  the CAM loss: the parameter updates within 0.2 relative (norm over all parameters; measured
  1e-3 to 3.4e-2 depending on the synthetic images; without --sync-bn ~1.4, summed instead of
  averaged gradients 1.0), BatchNorm statistics within rtol 1e-2, atol 1e-4. Why not tighter,
  and why lr 1e-5: this tiny BatchNorm network is so ill-conditioned that its float32 gradients
  carry 1-4% rounding error (measured against float64), and at larger rates one step's
  parameter difference grows 10-1000x the next step; run in float64 the same 1- and 2-process
  runs agree to 1e-8 after one step. The BAS loss is not used here: at a random start
  many class scores S are exactly 0 and ``r = S_bg / (S + 1e-8)`` amplifies rounding further.
* A run with ZeRO stage 1 (launch/configs/ds_zero1.json) killed mid-epoch
  (WSOL_FAST_FAULT_AFTER_STEP) and resumed with --resume ends with exactly (atol 0) the
  parameters of the uninterrupted run: same world size, same reductions.
* Class-mean maps (counts exact, maps rtol 1e-5), evaluation counts (exact) and BatchNorm
  buffer averaging are the same on 2 processes as on 1.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from wsol_fast.checkpoint import load_checkpoint
from wsol_fast.commands.train import train_config, train_parser
from wsol_fast.engine.distributed import free_port, with_batch_sizes
from wsol_fast.models.layers import CrossRankBatchNorm2d, convert_sync_batchnorm
from wsol_fast.engine.run import run_training
from wsol_fast.engine.trainer import FAULT_ENV, FAULT_EXIT_CODE, seed_everything
from wsol_fast.models import MobileNetBAS

ROOT = Path(__file__).resolve().parent.parent
DEEPSPEED = Path(sys.executable).parent / "deepspeed"
TINY = ["--synthetic-classes", "3", "--synthetic-train-per-class", "8", "--synthetic-test-per-class", "2",
        "--synthetic-image-size", "32", "--image-size", "32", "--batch-size", "8", "--width", "0.25",
        "--workers", "0", "--loader", "torch", "--sync-bn", "--log-every", "1"]

pytestmark = pytest.mark.skipif(not DEEPSPEED.exists(), reason="the deepspeed launcher is not installed")


def cpu_environment(env: dict | None = None) -> dict:
    environment = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", **(env or {})}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        environment.pop(name, None)
    return environment


def launch(script: str, *args, env: dict | None = None, processes: int = 2) -> subprocess.CompletedProcess:
    """``deepspeed --num_gpus N script args`` on the CPU (gloo); output captured."""
    command = [str(DEEPSPEED), "--num_gpus", str(processes), "--master_port", str(free_port()), script, *map(str, args)]
    return subprocess.run(command, cwd=ROOT, env=cpu_environment(env), capture_output=True, text=True, timeout=300)


def launch_nodes(hostfile: Path, script: str, *args) -> list[tuple[int, str]]:
    """One ``deepspeed --no_ssh`` launcher per node of ``hostfile`` (one process each), all on this
    host, as docs/distributed.md starts them on separate machines; (return code, output) per node."""
    nodes = len(hostfile.read_text().splitlines())
    port, logs, started = free_port(), [hostfile.with_name(f"node{rank}.log") for rank in range(nodes)], []
    for rank, log in enumerate(logs):
        with log.open("w") as output:
            started.append(subprocess.Popen(
                [str(DEEPSPEED), "--hostfile", str(hostfile), "--num_nodes", str(nodes), "--num_gpus", "1", "--no_ssh",
                 "--node_rank", str(rank), "--master_addr", "127.0.0.1", "--master_port", str(port), script,
                 *map(str, args)], cwd=ROOT, env=cpu_environment(), stdout=output, stderr=subprocess.STDOUT))
    return [(process.wait(timeout=300), log.read_text()) for process, log in zip(started, logs)]


def train_args(root: Path, out: str, *extra) -> list[str]:
    return [*TINY, "--data-root", str(root / "data"), "--out", str(root / out), *map(str, extra)]


def model_of(path: Path) -> dict:
    return load_checkpoint(path)["model"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """One folder with: ``two`` (2 processes, ZeRO-1, 2 epochs, checkpoint every 2 steps),
    ``faulted`` (the same, killed after step 5 and resumed)."""
    root = tmp_path_factory.mktemp("distributed")
    zero1 = ["--deepspeed_config", ROOT / "launch/configs/ds_zero1.json"]
    straight = launch("launch/train.py", *train_args(root, "two", "--epochs", "2", "--checkpoint-every", "2", *zero1))
    assert straight.returncode == 0, straight.stdout + straight.stderr
    killed = launch("launch/train.py", *train_args(root, "faulted", "--epochs", "2", "--checkpoint-every", "2", *zero1),
                    env={FAULT_ENV: "5"})
    assert killed.returncode != 0 and f"exits with return code = {FAULT_EXIT_CODE}" in killed.stdout + killed.stderr
    assert load_checkpoint(root / "faulted/early/checkpoint.pt")["global_step"] == 4, "mid-epoch 2 checkpoint"
    resumed = launch("launch/train.py", *train_args(root, "faulted", "--epochs", "2", "--checkpoint-every", "2",
                                                    *zero1, "--resume"))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "at epoch 1, step 1 of 3" in resumed.stdout
    return root


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    args = [*TINY, "--synthetic-train-per-class", "3", "--data-root", tmp_path / "data", "--epochs", "2",
            "--lr", "1e-5", "--method", "cam"]  # 9 images: one step of 8 (4 + 4) per epoch
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node0 slots=1\nnode1 slots=1\n")
    for code, output in launch_nodes(hostfile, "launch/train.py", *args, "--out", tmp_path / "two"):
        assert code == 0, output
    run_training(train_config(train_parser().parse_args(list(map(str, [*args, "--out", tmp_path / "one"])))))
    one, two = model_of(tmp_path / "one/cam/checkpoint.pt"), model_of(tmp_path / "two/cam/checkpoint.pt")
    seed_everything(0)  # the start of both runs
    start = dict(MobileNetBAS(3, 0.25).named_parameters())
    update_one = torch.cat([(one[name] - value).flatten() for name, value in start.items()])
    update_two = torch.cat([(two[name] - value).flatten() for name, value in start.items()])
    assert 0 < update_one.abs().max() < 1e-2, "the start is the runs' start"
    relative = ((update_two - update_one).norm() / update_one.norm()).item()
    assert relative < 0.2, f"the updates differ by {relative:.2e} (relative)"
    for name in one:
        if "running_" in name:
            torch.testing.assert_close(two[name], one[name], rtol=1e-2, atol=1e-4, msg=name)


def test_killed_mid_epoch_and_resumed_equals_uninterrupted(runs):
    straight, resumed = model_of(runs / "two/early/checkpoint.pt"), model_of(runs / "faulted/early/checkpoint.pt")
    for name, value in straight.items():
        torch.testing.assert_close(resumed[name], value, atol=0, rtol=0, msg=name)
    epochs = [line for line in (runs / "faulted/early/log.jsonl").read_text().splitlines()]
    assert len(epochs) == 2 and '"processes": 2' in epochs[1]


def test_mean_maps_and_evaluation_counts_do_not_depend_on_the_world_size(runs, tmp_path):
    sys.path.insert(0, str(ROOT / "tests"))
    from distributed_worker import mean_maps_and_counts, rank_buffers

    checkpoint = runs / "two/early/checkpoint.pt"
    result = launch("tests/distributed_worker.py", checkpoint, tmp_path / "two.pt")
    assert result.returncode == 0, result.stdout + result.stderr
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    one = mean_maps_and_counts(str(checkpoint))
    assert two["world_size"] == 2
    assert torch.equal(two["counts"], one["counts"]) and two["counts"].tolist() == [8, 8, 8]
    torch.testing.assert_close(two["maps"], one["maps"], rtol=1e-5, atol=1e-7)
    assert two["maps"].std() > 0
    assert two["eval"] == one["eval"], "counts all-reduced: identical summaries"
    torch.testing.assert_close(two["batchnorm_buffers"], (rank_buffers(0) + rank_buffers(1)) / 2)


def test_cross_rank_batchnorm_alone_is_batchnorm():
    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3), torch.nn.BatchNorm2d(5))
    synced = convert_sync_batchnorm(torch.nn.Sequential(*[m for m in plain]).__class__(
        torch.nn.Conv2d(3, 5, 3), torch.nn.BatchNorm2d(5)), on_gpu=False)
    synced.load_state_dict(plain.state_dict())
    assert isinstance(synced[1], CrossRankBatchNorm2d)
    x = torch.randn(4, 3, 9, 7)
    torch.testing.assert_close(synced(x), plain(x), rtol=0, atol=0)


def test_batch_sizes_must_divide_and_agree():
    assert with_batch_sizes({}, 32, 2, 4)["train_micro_batch_size_per_gpu"] == 4
    with pytest.raises(ValueError, match="not a multiple"):
        with_batch_sizes({}, 30, 1, 4)
    with pytest.raises(ValueError, match="ds.json: train_batch_size=64 disagrees"):
        with_batch_sizes({"train_batch_size": 64}, 32, 1, 2, "ds.json")
