"""Evaluate a checkpoint on the test split. See ``--help``."""
import sys

from wsol_fast.cli import evaluate_main

if __name__ == "__main__":
    sys.exit(evaluate_main())
