"""Probe a checkpoint's background-suppression objective (same as ``wsol-fast probe``). See ``--help``."""
import sys

from wsol_fast.commands.probe import probe_main as main

if __name__ == "__main__":
    sys.exit(main())
