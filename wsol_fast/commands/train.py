"""``wsol-fast train`` (``launch/train.py``, under ``deepspeed`` too): train MobileNetV1-BAS, the
early or late stage, or the CAM baseline. Its flags are generated from the config dataclasses."""
import argparse
from pathlib import Path

from .. import collectives
from ..config import DataConfig, LossConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from ..engine import distributed
from ..engine.run import run_training
from ..errors import UsageError
from ..fields import add_arguments
from .common import config_from_arguments, read_config, run_command

TRAIN_SECTIONS = (("run", RunConfig, "run"), ("data", DataConfig, "data"), ("model", ModelConfig, "model"),
                  ("optim", OptimConfig, "optimization"), ("loss", LossConfig, "loss"))


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train MobileNetV1-BAS: early stage (BAS losses), late stage (plus the L1 pull "
                    "toward class-mean foreground maps), or the CAM baseline (--method cam). Values come "
                    "from the flags, then --config's file, then the dataset's preset, then the defaults.")
    parser.add_argument("--config", type=Path, metavar="JSON",
                        help="start from a saved run's config.json (OUT/<stage>/config.json); flags override it")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT/<stage>/checkpoint.pt (and the DeepSpeed checkpoint it names), "
                             "mid-epoch included")
    parser.add_argument("--local_rank", type=int, default=-1, help=argparse.SUPPRESS)  # set by the launcher
    for name, section, title in TRAIN_SECTIONS:
        add_arguments(parser, section, name, title)
    distributed.deepspeed_module().add_config_arguments(parser)  # --deepspeed_config (launch/configs/*.json)
    return parser


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The run's config from ``train_parser``'s arguments (``--config``, the flags, DeepSpeed's)."""
    cfg = config_from_arguments(args, read_config(args.config) if args.config else None)
    if args.deepspeed_config is not None:
        cfg.run.deepspeed_config = args.deepspeed_config
    return cfg


def train_main(argv: list[str] | None = None) -> int:
    """``wsol-fast train``; returns the exit status."""
    args = train_parser().parse_args(argv)
    status = run_command(_train, args)
    if args.local_rank >= 0 or collectives.world_size() > 1:  # a launched process: leave the group
        distributed.shutdown()
    return status


def _train(args: argparse.Namespace) -> int:
    cfg = train_config(args)
    if cfg.loss.method == "cam" and cfg.run.stage == "late":
        raise UsageError("the CAM baseline has no late stage")
    run_training(cfg, resume=args.resume)
    return 0
