"""Robustness (issue #9, part 3): a non-finite loss stops the run and keeps the last good
checkpoint; a full disk or a killed process never leaves a corrupt checkpoint; checkpoints
load with ``weights_only=True`` (and nothing else); class-count and architecture mismatches
are reported; every command line refuses bad arguments with a message and a non-zero status."""
import errno
import io
import json
import runpy
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from wsol_fast import checkpoint as checkpoint_module
from wsol_fast import losses
from wsol_fast.checkpoint import atomic_save, load_checkpoint
from wsol_fast.commands.evaluate import evaluate_main
from wsol_fast.commands.train import train_config, train_main, train_parser
from wsol_fast.data import SyntheticSpec, generate_synthetic
from wsol_fast.engine.run import run_training
from wsol_fast.models.restore import model_from_checkpoint
from wsol_fast.commands.localize import localize_main

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--synthetic-classes", "3", "--synthetic-train-per-class", "4", "--synthetic-test-per-class", "2",
        "--synthetic-image-size", "64", "--image-size", "64", "--batch-size", "4", "--width", "0.25",
        "--workers", "0", "--lr", "0.01"]


def tiny_args(tmp_path, *extra) -> list[str]:
    return [*TINY, "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "run"), *map(str, extra)]


@pytest.fixture(scope="module")
def trained_root(tmp_path_factory) -> Path:
    """A folder with a tiny synthetic set (``data/``) and one early-stage epoch on it
    (``run/early/checkpoint.pt``, 3 classes); tests that change it work on a copy."""
    root = tmp_path_factory.mktemp("trained")
    run_training(train_config(train_parser().parse_args(tiny_args(root, "--epochs", "1"))))
    return root


@pytest.fixture
def trained(trained_root) -> Path:
    return trained_root / "run/early/checkpoint.pt"


def copy_of(root: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of ``trained_root`` in ``tmp_path``: (copy, its checkpoint)."""
    copy = Path(shutil.copytree(root, tmp_path / "copy"))
    return copy, copy / "run/early/checkpoint.pt"


class DiskFull(io.FileIO):
    """A file that takes ``room`` bytes, then fails like a full disk."""

    room = 3000

    def write(self, data) -> int:
        if self.tell() + len(data) > self.room:
            super().write(bytes(data)[:max(0, self.room - self.tell())])
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


def fill_disk_after(monkeypatch, good_writes: int) -> None:
    """Let ``atomic_save`` open ``good_writes`` files normally, then give it full-disk files."""
    calls = []

    def opener(path, mode="r", *args, **kwargs):
        calls.append(path)
        if "w" in mode and len(calls) > good_writes:
            return DiskFull(path, "w")
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module, "open", opener, raising=False)


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = atomic_save({"weights": torch.arange(10.0)}, tmp_path / "checkpoint.pt")
    before = path.read_bytes()
    fill_disk_after(monkeypatch, 0)
    with pytest.raises(OSError, match=r"could not write checkpoint .*checkpoint\.pt.*unchanged"):
        atomic_save({"weights": torch.randn(5000)}, path)
    assert path.read_bytes() == before and torch.equal(load_checkpoint(path)["weights"], torch.arange(10.0))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"], "no temporary file left behind"


def test_killed_writer_leaves_the_latest_checkpoint_intact(tmp_path):
    path = atomic_save({"epoch": 1, "weights": torch.ones(4)}, tmp_path / "checkpoint.pt")
    before = path.read_bytes()
    writer = textwrap.dedent(f"""
        import sys, time, torch
        from wsol_fast import checkpoint

        def stalled_save(obj, handle):  # half a checkpoint on disk, then the process is killed
            handle.write(b"PK\\x03\\x04" + bytes(1000)); handle.flush()
            print("writing", flush=True); time.sleep(60)

        checkpoint.torch.save = stalled_save
        checkpoint.atomic_save({{"epoch": 2}}, {str(path)!r})
    """)
    process = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "writing"
    finally:
        process.kill()
        process.wait()
    assert path.read_bytes() == before and load_checkpoint(path)["epoch"] == 1
    leftovers = [p.name for p in tmp_path.iterdir() if p != path]
    assert leftovers == [f".checkpoint.pt.tmp-{process.pid}"], "the partial file never took the final name"
    assert load_checkpoint(atomic_save({"epoch": 3}, path))["epoch"] == 3, "the next save succeeds"


def test_a_failed_save_keeps_the_last_epoch_and_resume_continues(trained_root, tmp_path, monkeypatch, capsys):
    root, checkpoint = copy_of(trained_root, tmp_path)
    cfg = train_config(train_parser().parse_args(tiny_args(root, "--epochs", "2")))
    fill_disk_after(monkeypatch, 0)
    with pytest.raises(OSError, match="could not write checkpoint"):
        run_training(cfg, resume=True)
    capsys.readouterr()
    assert train_main(tiny_args(root, "--epochs", "2", "--resume")) == 1, "a clear message, not a traceback"
    assert "could not write checkpoint" in capsys.readouterr().out
    assert load_checkpoint(checkpoint)["epoch"] == 1
    assert len((root / "run/early/log.jsonl").read_text().splitlines()) == 1, "no record of the unsaved epoch"
    monkeypatch.undo()
    assert run_training(cfg, resume=True).epoch == 2


def test_truncated_checkpoint_is_refused_by_every_command(trained_root, tmp_path, capsys):
    root, checkpoint = copy_of(trained_root, tmp_path)
    checkpoint.write_bytes(checkpoint.read_bytes()[:5000])
    with pytest.raises(ValueError, match=f"cannot read checkpoint {checkpoint}"):
        load_checkpoint(checkpoint)
    image = next((root / "data/images").rglob("*.jpg"))
    for command in (lambda: train_main(tiny_args(root, "--epochs", "2", "--resume")),
                    lambda: evaluate_main(["--checkpoint", str(checkpoint)]),
                    lambda: localize_main(["--checkpoint", str(checkpoint), str(image), "--out", str(tmp_path / "o")])):
        assert command() == 1
        assert "cannot read checkpoint" in capsys.readouterr().out


def test_checkpoints_load_weights_only_and_nothing_else(trained, tmp_path):
    state = torch.load(trained, map_location="cpu", weights_only=True)
    assert {"config", "model", "deepspeed", "scheduler", "rng", "epoch"} <= set(state)
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"config": state["config"], "model": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"refused to load checkpoint .*evil\.pt"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists(), "loading never runs pickled code"


def test_non_finite_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(trained_root, tmp_path, monkeypatch,
                                                                                 capsys):
    real_early_loss = losses.early_loss

    def nan_loss(out, labels, *args, **kwargs):
        total, parts = real_early_loss(out, labels, *args, **kwargs)
        return total * float("nan"), parts

    root, checkpoint = copy_of(trained_root, tmp_path)
    before = checkpoint.read_bytes()
    monkeypatch.setattr(losses, "early_loss", nan_loss)
    assert train_main(tiny_args(root, "--epochs", "3", "--resume")) == 1
    message = capsys.readouterr().out.replace("\n", "")
    assert "epoch 2: non-finite loss term(s) ['loss'" in message
    assert f"The last good checkpoint is kept: {checkpoint} (after epoch 1)" in message
    assert checkpoint.read_bytes() == before
    assert [json.loads(line)["epoch"] for line in (root / "run/early/log.jsonl").read_text().splitlines()] == [1]

    assert train_main(tiny_args(tmp_path / "fresh", "--epochs", "1")) == 1
    assert "No checkpoint was written" in capsys.readouterr().out
    assert not (tmp_path / "fresh/run/early/checkpoint.pt").exists()


def test_class_count_and_architecture_mismatches_are_named(trained, tmp_path, capsys):
    with pytest.raises(ValueError, match=f"checkpoint {trained} was trained for 3 classes, the dataset has 5"):
        model_from_checkpoint(trained, num_classes=5)
    other = generate_synthetic(tmp_path / "other", SyntheticSpec(num_classes=2, train_per_class=1, test_per_class=1,
                                                                 image_size=32, seed=0))
    assert evaluate_main(["--checkpoint", str(trained), "--dataset", "cub", "--data-root", str(other)]) == 1
    assert "has 3 classes, the cub test split has 2" in capsys.readouterr().out
    assert train_main([*TINY, "--dataset", "cub", "--data-root", str(other), "--out", str(tmp_path / "late"),
                       "--stage", "late", "--init", str(trained)]) == 1
    assert "trained for 3 classes, the dataset has 2" in capsys.readouterr().out

    state = load_checkpoint(trained)
    state["config"]["model"]["width_mult"] = 0.5
    wider = atomic_save(state, tmp_path / "wider.pt")
    with pytest.raises(ValueError, match=r"does not fit MobileNetBAS\(width_mult=0\.5\)"):
        model_from_checkpoint(wider)
    image = next(other.rglob("*.jpg"))
    assert evaluate_main(["--checkpoint", str(wider)]) == 1
    assert localize_main(["--checkpoint", str(wider), str(image), "--out", str(tmp_path / "o")]) == 1
    assert capsys.readouterr().out.count("does not fit MobileNetBAS(width_mult=0.5)") == 2


@pytest.fixture(scope="module")
def pretrain_main():
    return runpy.run_path(str(ROOT / "launch/pretrain.py"))["main"]


def test_every_command_refuses_bad_data_arguments(trained, tmp_path, capsys, pretrain_main):
    missing = str(tmp_path / "nowhere")
    commands = {"train": (train_main, ["--out", str(tmp_path / "x")]),
                "evaluate": (evaluate_main, ["--checkpoint", str(trained)]),
                "pretrain": (pretrain_main, ["--out", str(tmp_path / "x")])}
    for name, (main, argv) in commands.items():
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--dataset", "mnist"])
        assert exit_info.value.code == 2 and "invalid choice: 'mnist'" in capsys.readouterr().err, name
        assert main([*argv, "--dataset", "cub", "--data-root", missing]) == 1, name
        assert f"root directory not found: {missing}" in capsys.readouterr().out, name
    for main in (train_main, pretrain_main):
        assert main(["--dataset", "imagenet"]) == 2
        assert "error: --data-root is required for --dataset imagenet" in capsys.readouterr().out
