"""Pre-train the MobileNetV1 backbone as a plain classifier on a dataset's training split and save
it as a pytorch-ssd base net for ``train.py --pretrained`` (a stand-in for ImageNet weights)."""
import argparse
import sys

from wsol_fast.cli import config_from_arguments
from wsol_fast.config import DataConfig
from wsol_fast.engine.pretrain import pretrain_backbone
from wsol_fast.engine.progress import console, print_error
from wsol_fast.data import load_data_split
from wsol_fast.fields import add_arguments, positive_float, positive_int


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/default/pretrain")
    parser.add_argument("--width", type=positive_float, default=1.0)
    parser.add_argument("--epochs", type=positive_int, default=12)
    parser.add_argument("--lr", type=positive_float, default=0.1, help="peak of the one-cycle schedule")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    add_arguments(parser, DataConfig, "data", "data")
    args = parser.parse_args(argv)
    cfg = config_from_arguments(args)
    try:
        split = load_data_split(cfg, "train")
        path = pretrain_backbone(split, args.out, args.width, cfg.data.image_size, cfg.data.resize,
                                 args.epochs, args.lr, cfg.data.batch_size, cfg.data.workers,
                                 args.seed, args.device, cfg.data.train_crop)
    except (FileNotFoundError, ValueError) as error:
        print_error(error)
        return 1
    console.print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
