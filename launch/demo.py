"""The demo on the built-in synthetic set (same as ``wsol-fast demo``). See ``--help``."""
import sys

from wsol_fast.commands.demo import demo_main as main

if __name__ == "__main__":
    sys.exit(main())
