"""Evaluate a checkpoint (same as ``wsol-fast evaluate``; ``deepspeed launch/evaluate.py ...`` shards it). See ``--help``."""
import sys

from wsol_fast.commands.evaluate import evaluate_main

if __name__ == "__main__":
    sys.exit(evaluate_main())
