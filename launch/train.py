"""Train MobileNetV1-BAS (early or late stage) or the CAM baseline (same as ``wsol-fast train``;
``deepspeed launch/train.py ...`` for several processes). See ``--help``."""
import sys

from wsol_fast.commands.train import train_main

if __name__ == "__main__":
    sys.exit(train_main())
