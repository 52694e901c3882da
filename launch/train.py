"""Train MobileNetV1-BAS (early or late stage) or the CAM baseline. See ``--help``."""
import sys

from wsol_fast.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
