"""Every numeric flag is checked up front by one set of argument types, the same way in every
command: a bad value stops the command at once with exit status 2 and ``argument --NAME: must be``."""
import runpy
from pathlib import Path

import pytest

from wsol_fast.commands.common import chosen_device
from wsol_fast.commands.evaluate import evaluate_main, evaluate_parser
from wsol_fast.commands.evaluate_maps import evaluate_maps_parser
from wsol_fast.commands.pretrain import pretrain_parser

from wsol_fast.commands.train import train_main
from wsol_fast.commands.localize import localize_main, localize_parser

ROOT = Path(__file__).resolve().parent.parent
TRAIN_BAD = [("--lr", "1e38"), ("--lr", "0"), ("--lr", "nan"), ("--alpha", "nan"), ("--alpha", "-1"),
             ("--beta", "inf"), ("--lam", "-0.5"), ("--weight-decay", "nan"), ("--workers", "-1"),
             ("--val-fraction", "1"), ("--checkpoint-every", "-2"), ("--epochs", "0"), ("--width", "inf"),
             ("--milestones", "-3"), ("--batch-size", "two")]
EVALUATE_BAD = [("--device", "gpu"), ("--device", "cuda:x"), ("--threshold", "1.5"), ("--threshold", "-0.5"),
                ("--threshold", "nan"), ("--step", "0"), ("--step", "1"), ("--norm", "percentile:abc"),
                ("--norm", "percentile:101"), ("--cam", "top0"), ("--workers", "-1")]
LOCALIZE_BAD = [("--device", "gpu0"), ("--threshold", "1.5"), ("--threshold", "nan"), ("--norm", "mean"),
                ("--map-class", "topk:x"), ("--workers", "-3"), ("--batch-size", "0")]


def refused(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("flag, value", TRAIN_BAD)
def test_train_refuses(flag, value, capsys, tmp_path):
    err = refused(train_main, ["--out", str(tmp_path), flag, value], capsys)
    assert f"argument {flag}: must be " in err and value in err
    assert not any(tmp_path.iterdir()), "nothing written"


@pytest.mark.parametrize("flag, value", EVALUATE_BAD)
def test_evaluate_refuses(flag, value, capsys, tmp_path):
    err = refused(evaluate_main, ["--checkpoint", str(tmp_path / "c.pt"), flag, value], capsys)
    assert f"argument {flag}: must be " in err and value in err


@pytest.mark.parametrize("flag, value", LOCALIZE_BAD)
def test_localize_refuses(flag, value, capsys, tmp_path):
    err = refused(localize_main, ["x.jpg", "--checkpoint", str(tmp_path / "c.pt"), "--out", str(tmp_path), flag,
                                  value], capsys)
    assert f"argument {flag}: must be " in err and value in err


@pytest.mark.parametrize("flag, value", [("--lr", "-1"), ("--width", "nan"), ("--workers", "-1"), ("--device", "tpu")])
def test_pretrain_refuses(flag, value, capsys, tmp_path):
    main = runpy.run_path(str(ROOT / "launch/pretrain.py"))["main"]
    err = refused(main, ["--out", str(tmp_path), flag, value], capsys)
    assert f"argument {flag}: must be " in err


def test_device_defaults_and_auto(monkeypatch):
    """The model commands default to ``auto`` (a GPU when there is one), as training does;
    evaluate-maps to the CPU, where its sweeps run fastest on maps read from disk."""
    assert evaluate_parser().parse_args(["--checkpoint", "c.pt"]).device == "auto"
    assert localize_parser().parse_args(["x.jpg", "--checkpoint", "c.pt", "--out", "o"]).device == "auto"
    assert pretrain_parser().parse_args([]).device == "auto"
    assert evaluate_maps_parser().parse_args(["--maps", "m", "--metadata", "d", "--data-root", "r"]).device == "cpu"
    assert evaluate_parser().parse_args(["--checkpoint", "c.pt", "--device", "cuda:1"]).device == "cuda:1"
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert [chosen_device(name) for name in ("auto", "cpu", "cuda:1")] == ["cpu", "cpu", "cuda:1"]
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert chosen_device("auto") == "cuda"
