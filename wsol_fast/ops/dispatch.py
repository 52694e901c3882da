"""Choice of implementation for every op with a fast path.

``WSOL_FAST_OPS=reference|triton|ext`` forces one; otherwise Triton serves CUDA tensors in
training, the C++/CUDA extension serves evaluation, and the PyTorch reference serves the rest.
"""
import os

BACKENDS = ("reference", "triton", "ext")


def forced_backend() -> str | None:
    """The backend named by ``WSOL_FAST_OPS``, or None when unset."""
    name = os.environ.get("WSOL_FAST_OPS", "").strip().lower()
    if not name:
        return None
    if name not in BACKENDS:
        raise ValueError(f"WSOL_FAST_OPS={name!r}: expected one of {', '.join(BACKENDS)}")
    return name
