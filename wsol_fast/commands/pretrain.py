"""Pre-train the MobileNetV1 backbone as a plain classifier on a dataset's training split and save
it as a pytorch-ssd base net for ``train --pretrained`` (a stand-in for ImageNet weights):
``wsol-fast pretrain`` (``launch/pretrain.py``)."""
import argparse

from ..config import DataConfig, ModelConfig, RunConfig
from ..data import load_data_split
from ..engine.pretrain import PRETRAIN_EPOCHS, PRETRAIN_LR, pretrain_backbone
from ..engine.progress import console
from ..fields import add_arguments, positive_float, positive_int
from .common import add_device_argument, chosen_device, config_from_arguments, run_command


def pretrain_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/default/pretrain")
    parser.add_argument("--width", type=positive_float, default=ModelConfig.width_mult)
    parser.add_argument("--epochs", type=positive_int, default=PRETRAIN_EPOCHS)
    parser.add_argument("--lr", type=positive_float, default=PRETRAIN_LR, help="peak of the one-cycle schedule")
    parser.add_argument("--seed", type=int, default=RunConfig.seed)
    add_device_argument(parser, "pretraining")
    add_arguments(parser, DataConfig, "data", "data")
    return parser


def pretrain_main(argv: list[str] | None = None) -> int:
    """``wsol-fast pretrain``; returns the exit status."""
    return run_command(_pretrain, pretrain_parser().parse_args(argv))


def _pretrain(args: argparse.Namespace) -> int:
    cfg = config_from_arguments(args)
    split = load_data_split(cfg, "train")
    path = pretrain_backbone(split, args.out, args.width, cfg.data.image_size, cfg.data.resize,
                             args.epochs, args.lr, cfg.data.batch_size, cfg.data.workers,
                             args.seed, chosen_device(args.device), cfg.data.train_crop)
    console.print(f"saved {path}")
    return 0
