"""Pre-train the MobileNetV1 backbone as a plain classifier (same as ``wsol-fast pretrain``). See ``--help``."""
import sys

from wsol_fast.commands.pretrain import pretrain_main as main

if __name__ == "__main__":
    sys.exit(main())
