"""The ``wsol-fast`` console script: ``wsol-fast COMMAND ...`` runs one of ``COMMANDS`` (each has
``--help``); the ``launch/`` scripts run the same functions."""
import sys

from .commands.demo import demo_main
from .commands.evaluate import evaluate_main
from .commands.evaluate_maps import evaluate_maps_main
from .commands.localize import localize_main
from .commands.pretrain import pretrain_main
from .commands.probe import probe_main
from .commands.train import train_main

COMMANDS = {"train": train_main, "evaluate": evaluate_main, "evaluate-maps": evaluate_maps_main,
            "localize": localize_main, "pretrain": pretrain_main, "probe": probe_main, "demo": demo_main}


def main(argv: list[str] | None = None) -> int:
    """Run ``wsol-fast`` with ``argv`` (default: the process's arguments); returns the exit status."""
    usage = f"usage: wsol-fast {{{','.join(COMMANDS)}}} ...   (wsol-fast COMMAND --help for its options)"
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(usage)
        return 0
    if not argv or argv[0] not in COMMANDS:
        print(usage + (f"\nerror: unknown command {argv[0]!r}" if argv else ""), file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])
