"""One run per run folder (an exclusive lock, taken over from a dead holder), partial checkpoint
files of a killed save removed at start, and the model of every checkpoint kept usable: a
diverging run stops before saving weights whose forward pass is not finite, and every command
names a checkpoint that holds such weights."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wsol_fast.checkpoint import atomic_save, load_checkpoint
from wsol_fast.commands.evaluate import evaluate_main
from wsol_fast.commands.train import train_config, train_main, train_parser
from wsol_fast.engine.run import run_training
from wsol_fast.models.restore import model_from_checkpoint
from wsol_fast.engine.run_lock import LOCK_NAME, RunFolderBusyError, run_folder_lock
from wsol_fast.commands.localize import localize_main

TINY = ["--synthetic-classes", "3", "--synthetic-train-per-class", "4", "--synthetic-test-per-class", "1",
        "--synthetic-image-size", "32", "--image-size", "32", "--batch-size", "4", "--width", "0.25",
        "--workers", "0", "--loader", "torch"]


def tiny_args(root: Path, *extra) -> list[str]:
    return [*TINY, "--data-root", str(root / "data"), "--out", str(root / "run"), *map(str, extra)]


def hold_lock(folder: Path) -> subprocess.Popen:
    """Another process that holds ``folder``'s run lock until killed."""
    holder = textwrap.dedent(f"""
        import time
        from wsol_fast.engine.run_lock import run_folder_lock
        with run_folder_lock({str(folder)!r}):
            print("holding", flush=True)
            time.sleep(120)
    """)
    process = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    assert any(line.strip() == "holding" for line in iter(process.stdout.readline, "")), "no lock taken"
    return process


def test_a_second_run_on_a_busy_folder_is_refused_and_a_dead_holder_is_taken_over(tmp_path, capsys):
    folder = tmp_path / "run/early"
    holder = hold_lock(folder)
    try:
        assert train_main(tiny_args(tmp_path, "--epochs", "1")) == 1
        out = capsys.readouterr().out
        assert f"error: another run is using {folder}: process {holder.pid} on " in out
        assert "wait for it to end or pass another --out" in out
        assert not (folder / "checkpoint.pt").exists() and not (folder / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()
    (folder / f".checkpoint.pt.tmp-{holder.pid}").write_bytes(b"PK\x03\x04 partial")  # a killed save's leftover
    assert train_main(tiny_args(tmp_path, "--epochs", "1")) == 0
    out = capsys.readouterr().out
    assert f"took over {folder / LOCK_NAME} from process {holder.pid} on " in out
    assert f"removed {folder / f'.checkpoint.pt.tmp-{holder.pid}'}, a partial checkpoint left by a killed save" in out
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []
    assert (folder / LOCK_NAME).read_text() == "", "released at the end of the run"


def test_the_lock_is_exclusive_within_a_process_too(tmp_path):
    with run_folder_lock(tmp_path):
        with pytest.raises(RunFolderBusyError, match=f"another run is using {tmp_path}"):
            with run_folder_lock(tmp_path):
                pass
    with run_folder_lock(tmp_path):  # released
        pass


def test_a_diverging_run_never_saves_an_unusable_model(tmp_path, capsys):
    assert train_main(tiny_args(tmp_path, "--epochs", "3", "--lr", "1e6", "--checkpoint-every", "1")) == 1
    out = capsys.readouterr().out
    assert "the model is not usable: its forward pass gives non-finite" in out or "non-finite loss" in out
    checkpoint = tmp_path / "run/early/checkpoint.pt"
    if checkpoint.exists():  # whatever was kept is a usable model
        model_from_checkpoint(checkpoint)


def test_every_command_names_a_checkpoint_whose_forward_pass_overflows(tmp_path, capsys):
    run_training(train_config(train_parser().parse_args(tiny_args(tmp_path, "--epochs", "1"))))
    state = load_checkpoint(tmp_path / "run/early/checkpoint.pt")
    for name, tensor in state["model"].items():
        if name.endswith("weight") and name.startswith("features"):
            tensor.mul_(1e6)  # finite weights, overflowing features (a diverged run)
    bad = atomic_save(state, tmp_path / "diverged.pt")
    image = next((tmp_path / "data/images").rglob("*.jpg"))
    message = f"checkpoint {bad} is not usable: its forward pass gives non-finite backbone features"
    for command in (lambda: evaluate_main(["--checkpoint", str(bad)]),
                    lambda: localize_main(["--checkpoint", str(bad), str(image), "--out", str(tmp_path / "o")]),
                    lambda: train_main(tiny_args(tmp_path, "--stage", "late", "--init", bad, "--epochs", "1"))):
        assert command() == 1
        assert message in capsys.readouterr().out


def test_resume_with_a_deepspeed_folder_of_another_width_is_named(tmp_path, capsys):
    run_training(train_config(train_parser().parse_args(tiny_args(tmp_path, "--epochs", "1"))))
    other = tmp_path / "wide"
    run_training(train_config(train_parser().parse_args(tiny_args(other, "--epochs", "1", "--width", "0.5"))))
    checkpoint = tmp_path / "run/early/checkpoint.pt"
    checkpoint.write_bytes((other / "run/early/checkpoint.pt").read_bytes())
    assert train_main(tiny_args(tmp_path, "--epochs", "2", "--resume")) == 1
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert out.startswith(f"error: the DeepSpeed checkpoint {tmp_path / 'run/early/deepspeed/epoch1-step3'} does not "
                          f"fit the model of {checkpoint} (width 0.5): size mismatch for features.0.0.weight")
