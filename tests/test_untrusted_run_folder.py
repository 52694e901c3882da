"""A run folder received from someone else: resuming, evaluating or localizing it never runs code
planted in any file it reads (DeepSpeed's model and ZeRO optimizer states, ``checkpoint.pt`` with
the mean maps), and a corrupt file is named in a one-line error."""
import os
import shutil
from pathlib import Path

import pytest
import torch

from wsol_fast.checkpoint import load_checkpoint
from wsol_fast.commands.evaluate import evaluate_main
from wsol_fast.commands.train import train_config, train_main, train_parser
from wsol_fast.engine.deepspeed_files import deepspeed_safe_globals
from wsol_fast.engine.run import run_training
from wsol_fast.commands.localize import localize_main

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--synthetic-classes", "3", "--synthetic-train-per-class", "4", "--synthetic-test-per-class", "1",
        "--synthetic-image-size", "32", "--image-size", "32", "--batch-size", "4", "--width", "0.25",
        "--workers", "0", "--loader", "torch", "--deepspeed_config", str(ROOT / "launch/configs/ds_zero1.json")]
STATE_FILES = {"model states": "mp_rank_00_model_states.pt",
               "optimizer states": "zero_pp_rank_0_mp_rank_00_optim_states.pt"}


def tiny_args(root: Path, *extra) -> list[str]:
    return [*TINY, "--data-root", str(root / "data"), "--out", str(root / "run"), *map(str, extra)]


@pytest.fixture(scope="module")
def zero_root(tmp_path_factory) -> Path:
    """One early epoch under ZeRO stage 1 (model and optimizer state files); tests use copies."""
    root = tmp_path_factory.mktemp("zero")
    run_training(train_config(train_parser().parse_args(tiny_args(root, "--epochs", "1"))))
    return root


def copy_of(root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(root, tmp_path / "copy"))


def deepspeed_file(root: Path, kind: str) -> Path:
    (tag,) = [path for path in (root / "run/early/deepspeed").iterdir() if path.is_dir()]
    return tag / STATE_FILES[kind]


class Payload:
    """Unpickling this runs ``touch marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant(path: Path, marker: Path) -> None:
    """Add a code-running object to the file at ``path``, keeping everything else in it."""
    state = load_checkpoint(path, safe_globals=deepspeed_safe_globals())
    state["extra"] = Payload(marker)
    torch.save(state, path)


@pytest.mark.parametrize("kind", list(STATE_FILES))
def test_resume_refuses_code_planted_in_a_deepspeed_file(zero_root, tmp_path, capsys, kind):
    root, marker = copy_of(zero_root, tmp_path), tmp_path / "code-ran"
    path = deepspeed_file(root, kind)
    plant(path, marker)
    assert train_main(tiny_args(root, "--epochs", "2", "--resume")) == 1
    out = capsys.readouterr().out
    assert f"error: refused to load checkpoint {path}: it holds objects other than tensors" in out
    assert "weights_only=False" not in out, "no advice to load it unsafely"
    assert not marker.exists(), "the planted code ran"


def test_every_command_refuses_code_planted_in_checkpoint_pt(zero_root, tmp_path, capsys):
    root, marker = copy_of(zero_root, tmp_path), tmp_path / "code-ran"
    checkpoint = root / "run/early/checkpoint.pt"
    plant(checkpoint, marker)
    image = next((root / "data/images").rglob("*.jpg"))
    for command in (lambda: train_main(tiny_args(root, "--epochs", "2", "--resume")),
                    lambda: train_main(tiny_args(root, "--stage", "late", "--epochs", "1")),
                    lambda: evaluate_main(["--checkpoint", str(checkpoint)]),
                    lambda: localize_main(["--checkpoint", str(checkpoint), str(image), "--out", str(tmp_path / "o")])):
        assert command() == 1
        assert f"refused to load checkpoint {checkpoint}" in capsys.readouterr().out
    assert not marker.exists(), "the planted code ran"


@pytest.mark.parametrize("kind", list(STATE_FILES))
def test_truncated_deepspeed_file_is_named(zero_root, tmp_path, capsys, kind):
    root = copy_of(zero_root, tmp_path)
    path = deepspeed_file(root, kind)
    path.write_bytes(path.read_bytes()[:3000])
    assert train_main(tiny_args(root, "--epochs", "2", "--resume")) == 1
    out = capsys.readouterr().out
    assert f"error: cannot read checkpoint {path}: PytorchStreamReader failed" in out
    assert len(out.strip().splitlines()[-1]) < 400 and "Traceback" not in out


def test_enums_are_saved_as_values_so_runs_of_any_python_resume(tmp_path, monkeypatch):
    """Python 3.11.0-3.11.4 pickle an enum member as ``getattr(cls, name)``; DeepSpeed's ZeRO files
    hold one (the stage), which no weights-only load may call."""
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from torch.serialization import get_unsafe_globals_in_checkpoint

    monkeypatch.setattr(ZeroStageEnum, "__reduce_ex__", lambda self, protocol: (getattr, (type(self), self.name)))
    run_training(train_config(train_parser().parse_args(tiny_args(tmp_path, "--epochs", "1"))))
    path = deepspeed_file(tmp_path, "optimizer states")
    assert "builtins.getattr" not in get_unsafe_globals_in_checkpoint(path)
    state = load_checkpoint(path, safe_globals=deepspeed_safe_globals())  # weights only
    assert state["optimizer_state_dict"]["zero_stage"] == 1
    assert run_training(train_config(train_parser().parse_args(tiny_args(tmp_path, "--epochs", "2"))),
                        resume=True).epoch == 2
