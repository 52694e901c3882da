"""Score any method's saved maps with wsolevaluation's metrics (``wsol-fast evaluate-maps``). See ``--help``."""
import sys

from wsol_fast.commands.evaluate_maps import evaluate_maps_main

if __name__ == "__main__":
    sys.exit(evaluate_maps_main())
