"""The one base of the errors a command reports in a single line, ``error: <message>``: bad
input (a file, an annotation, a checkpoint, a run folder, conflicting flags), never a bug. The
message names the file, flag or value at fault. Imports nothing."""


class WsolFastError(Exception):
    """Bad input a command stops on with exit status 1."""


class UsageError(WsolFastError):
    """Flags that cannot go together (exit status 2, as argparse's own usage errors)."""
