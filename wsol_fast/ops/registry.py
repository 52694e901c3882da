"""One rule picks the implementation of every op with a fast path.

An ``Op`` has its reference (plain PyTorch, the definition of correct) and fast paths named by
backend: "triton" (the training kernels) or "ext" (the C++/CUDA extension), each with a check
that says why it cannot serve given inputs. ``WSOL_FAST_OPS`` means the same for every op:

- unset: the first fast path that can serve the inputs, else the reference (with a warning
  where the extension could have served but is not built for the device);
- ``reference``: the reference;
- ``triton`` or ``ext``: that backend for every op that has it, and an error saying why where it
  cannot serve the inputs; ops without it run their reference.
"""
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

BACKENDS = ("reference", "triton", "ext")


def forced_backend() -> str | None:
    """The backend named by ``WSOL_FAST_OPS``, or None when unset."""
    name = os.environ.get("WSOL_FAST_OPS", "").strip().lower()
    if not name:
        return None
    if name not in BACKENDS:
        raise ValueError(f"WSOL_FAST_OPS={name!r}: expected one of {', '.join(BACKENDS)}")
    return name


@dataclass(frozen=True)
class FastPath:
    """``function`` (the reference's signature) of ``backend``; ``unavailable(tensor, forced)``
    is why it cannot serve inputs on ``tensor``'s device (None: it can); ``warn``: say so when
    the default choice falls back to the reference for that reason."""

    backend: str
    function: Callable
    unavailable: Callable[[torch.Tensor, bool], str | None]
    warn: bool = False


class Op:
    """An op: calling it runs the implementation ``pick`` chooses for its first argument."""

    def __init__(self, name: str, reference: Callable, *fast: FastPath):
        self.name, self.reference, self.fast = name, reference, {path.backend: path for path in fast}

    def pick(self, tensor: torch.Tensor) -> Callable:
        """The implementation that serves inputs on ``tensor`` (see the module docstring)."""
        forced = forced_backend()
        if forced is not None:
            path = self.fast.get(forced)
            if path is None:
                return self.reference
            reason = path.unavailable(tensor, True)
            if reason is not None:
                raise RuntimeError(f"WSOL_FAST_OPS={forced}: {self.name} cannot run on {tensor.device} "
                                   f"tensors: {reason}")
            return path.function
        for path in self.fast.values():
            reason = path.unavailable(tensor, False)
            if reason is None:
                return path.function
            if path.warn:
                warnings.warn(f"{self.name} runs the slow PyTorch reference: {reason}", RuntimeWarning,
                              stacklevel=3)
        return self.reference

    def backend_for(self, tensor: torch.Tensor) -> str:
        """The backend name ``pick`` chooses for ``tensor``."""
        chosen = self.pick(tensor)
        return next((name for name, path in self.fast.items() if path.function is chosen), "reference")

    def __call__(self, *args, **kwargs):
        return self.pick(args[0])(*args, **kwargs)
