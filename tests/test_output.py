"""Output to a non-terminal (CI, cluster logs, ``| tee``): every message whole on one line, progress
as plain lines with every loss term, images/s and ETA, and no rich markup eaten from messages."""
import io
import os
import re
import subprocess
import sys
from pathlib import Path

from wsol_fast.engine import progress
from wsol_fast.engine.distributed import LAUNCHER_VARIABLES

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--synthetic-classes", "3", "--synthetic-train-per-class", "4", "--synthetic-test-per-class", "1",
        "--synthetic-image-size", "32", "--image-size", "32", "--batch-size", "4", "--width", "0.25",
        "--workers", "0", "--loader", "torch", "--log-every", "1"]


def piped_environment() -> dict:
    """This environment without the terminal's size, as CI and batch schedulers run commands (and
    without the process group that in-process tests made)."""
    dropped = ("COLUMNS", "LINES", *LAUNCHER_VARIABLES)
    environment = {k: v for k, v in os.environ.items() if k not in dropped}
    return {**environment, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}


def train(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "launch/train.py", *TINY, *map(str, args)], cwd=ROOT, timeout=600,
                          env=piped_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_training_messages_and_progress_stay_whole_on_one_line_when_piped(tmp_path):
    out = tmp_path / ("a-run-folder-with-a-long-name-as-clusters-make-them-" * 3)
    assert len(str(out)) >= 150
    first = train("--data-root", tmp_path / "data", "--out", out, "--epochs", "1")
    assert first.returncode == 0, first.stdout
    resumed = train("--data-root", tmp_path / "data", "--out", out, "--epochs", "2", "--resume")
    assert resumed.returncode == 0, resumed.stdout
    lines = (first.stdout + resumed.stdout).splitlines()
    assert not [line for line in lines if "…" in line], "a line was truncated"
    checkpoint = out / "early" / "checkpoint.pt"
    assert f"resumed {checkpoint} at epoch 1, step 0 of 3" in resumed.stdout.splitlines()
    assert any(line.startswith("early: 12 training images, 3 classes") and "loader: " in line for line in lines)
    steps = [line for line in lines if re.match(r"early epoch \d/\d step \d/3 ", line)]
    assert len(steps) == 6, lines  # log every step: 3 steps in each of the two epochs
    for line in steps:
        for term in ("loss=", "cls=", "fg=", "bg=", "area=", "top1=", "img/s", "elapsed ", "ETA "):
            assert term in line, (term, line)
    assert steps[-1].startswith("early epoch 2/2 step 3/3 ") and steps[-1].endswith("ETA 0:00:00")


def test_error_text_is_printed_literally_in_one_line(capsys):
    message = "non-finite value(s) in [nan] of " + "/a/long/path" * 20
    progress.print_error(message)
    assert capsys.readouterr().out == f"error: {message}\n"


def test_plain_progress_prints_news_and_completion_once():
    stream = io.StringIO()
    with progress.PlainProgress(stream) as bars:
        task = bars.add_task("class-mean maps", total=10, info="", unit="images")
        bars.advance(task, 4)  # no news: silent
        bars.update(task, info="12.5 img/s")
        bars.advance(task, 6)  # completes: its line waits for news that may follow
        bars.advance(task, 0)  # already complete: silent
        epoch = bars.add_task("pretrain epoch 1/1", total=2, info="", unit="step")  # the maps' line is due
        bars.advance(epoch, 2)
        bars.update(epoch, info="loss=1.0")  # the epoch's record comes after its last step: one line
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("class-mean maps images 4/10 12.5 img/s elapsed 0:00:00 ETA ")
    assert lines[1].startswith("class-mean maps images 10/10 12.5 img/s elapsed ")
    assert lines[1].endswith("ETA 0:00:00")
    assert lines[2].startswith("pretrain epoch 1/1 step 2/2 loss=1.0 elapsed ")


def test_results_table_keeps_a_long_title_on_one_line():
    title = "checkpoint " + "x" * 200 + ": bas, minmax, threshold 0.5, test split"
    table = progress.results_table(title, [{"name": "a", "gt_known": 50.0}], ["name", "gt_known"])
    console = progress.make_console()  # stdout is not a terminal under pytest
    with console.capture() as captured:
        console.print(table)
    assert title in captured.get().splitlines()[0]
