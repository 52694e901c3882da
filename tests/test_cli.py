"""One command line: ``wsol-fast COMMAND`` runs every command (the ``launch/`` scripts run the same
functions), and one wrapper turns bad input into ``error: <message>`` with exit status 1 (2 for
flags that cannot go together) while a bug keeps its traceback."""
import argparse
import runpy
from pathlib import Path

import pytest

from wsol_fast import cli
from wsol_fast.checkpoint import CheckpointError
from wsol_fast.commands.common import run_command
from wsol_fast.data import AnnotationError, ImageReadError
from wsol_fast.engine.run_lock import RunFolderBusyError
from wsol_fast.engine.run_checkpoint import NonFiniteLossError
from wsol_fast.errors import UsageError, WsolFastError
from wsol_fast.models import PretrainedMismatchError

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = {"train": "train.py", "evaluate": "evaluate.py", "evaluate-maps": "evaluate_maps.py", "localize": "localize.py",
          "pretrain": "pretrain.py", "probe": "probe_background.py", "demo": "demo.py"}


@pytest.mark.parametrize("command", sorted(LAUNCH))
def test_every_command_runs_from_wsol_fast_and_from_its_launch_script(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert help_text.startswith("usage: ")
    shim = runpy.run_path(str(ROOT / "launch" / LAUNCH[command]))
    assert cli.COMMANDS[command] in shim.values()  # the script calls the same function


def test_unknown_command_is_a_usage_error(capsys):
    assert cli.main(["fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0
    usage = capsys.readouterr().out
    assert all(name in usage for name in LAUNCH)


@pytest.mark.parametrize("error_class", [CheckpointError, AnnotationError, ImageReadError, RunFolderBusyError,
                                         NonFiniteLossError, PretrainedMismatchError, UsageError])
def test_every_input_error_has_the_one_base(error_class):
    assert issubclass(error_class, WsolFastError)


@pytest.mark.parametrize("raised, status", [(UsageError("--a and --b"), 2), (CheckpointError("bad file x.pt"), 1),
                                            (FileNotFoundError("no such file: y"), 1), (ValueError("lr < 0"), 1)])
def test_the_wrapper_prints_one_error_line_with_its_status(raised, status, capsys):
    def body(args):
        raise raised
    assert run_command(body, argparse.Namespace()) == status
    assert capsys.readouterr().out.strip() == f"error: {raised}"


def test_a_bug_keeps_its_traceback():
    def body(args):
        raise KeyError("a bug")
    with pytest.raises(KeyError):
        run_command(body, argparse.Namespace())
