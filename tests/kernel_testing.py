"""Shared set-up of the tests: the device they run on, the flags under which two training runs
must be bit-identical, and a guard that the kernels really run in the interpreter when there is
no GPU (``conftest.py`` sets ``TRITON_INTERPRET=1`` before anything imports them)."""
import torch

from wsol_fast.kernels.utils import INTERPRETER

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Runs are bit-identical on the CPU as they are; on a GPU only with deterministic algorithms
# (cuDNN's depthwise-convolution backward is not deterministic otherwise).
EXACT_RUN_FLAGS = ["--deterministic"] if DEVICE == "cuda" else []
if DEVICE == "cpu" and not INTERPRETER:
    raise RuntimeError("no CUDA and wsol_fast.kernels was imported without TRITON_INTERPRET=1")


def made_by_fused_op(tensor: torch.Tensor, name: str) -> bool:
    """Whether ``tensor`` is an output of the operator ``torch.ops.wsol_fast.<name>`` (read
    from the autograd node that ``torch.library.register_autograd`` gives it)."""
    return type(tensor.grad_fn).__name__ == f"GeneratedBackwardFor_wsol_fast_{name}_defaultBackward"
