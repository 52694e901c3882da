"""Localize objects in new images with a trained checkpoint (same as ``wsol-fast localize``). See ``--help``."""
import sys

from wsol_fast.commands.localize import localize_main

if __name__ == "__main__":
    sys.exit(localize_main())
