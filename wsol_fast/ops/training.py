"""Training-step ops through the op registry (``registry``): the Triton kernels
(``wsol_fast.kernels``) serve CUDA tensors, the PyTorch reference (``training_reference``) the
rest. Signatures and shapes are those of ``training_reference``."""
import functools
import os
from collections.abc import Callable

import torch

from . import training_reference as reference
from .registry import FastPath, Op


@functools.cache
def _triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _triton_unavailable(tensor: torch.Tensor, forced: bool) -> str | None:
    """Why the kernels cannot serve ``tensor``: CUDA tensors only, CPU tensors too when forced
    under the interpreter (``TRITON_INTERPRET=1``)."""
    if not _triton_importable():
        return "triton is not installed"
    if tensor.is_cuda or (forced and os.environ.get("TRITON_INTERPRET") == "1"):
        return None
    return "the Triton kernels run on CUDA tensors (or under TRITON_INTERPRET=1)"


def _atomics_unavailable(tensor: torch.Tensor, forced: bool) -> str | None:
    if torch.are_deterministic_algorithms_enabled():
        return ("deterministic algorithms are on, and the kernel adds floats with atomics (unset WSOL_FAST_OPS "
                "or run without --deterministic)")
    return _triton_unavailable(tensor, forced)


def _kernel(name: str, unavailable=_triton_unavailable) -> FastPath:
    """The Triton fast path ``wsol_fast.kernels.<name>``, imported on first use so that
    ``TRITON_INTERPRET`` set by then is honoured and CPU-only runs never import triton."""
    def launch(*args, **kwargs):
        from wsol_fast import kernels
        return getattr(kernels, name)(*args, **kwargs)

    return FastPath("triton", launch, unavailable)


def _op(name: str, unavailable=_triton_unavailable) -> Callable:
    op = Op(name, getattr(reference, name), _kernel(name, unavailable))
    functools.update_wrapper(op, getattr(reference, name))
    return op


# logits (B, 1, H, W) -> fg (B, 1, H, W), area (B,), pooled (B, 1, H/2, W/2)
foreground_epilogue = _op("foreground_epilogue")
# detach(x4) * (1 - fg): x4 (B, K, H, W), fg (B, 1, H, W) -> (B, K, H, W)
background_product = _op("background_product")
# class maps (B, C, h, w), pooled fg (B, 1, h, w) -> (B, C) float32
guided_score = _op("guided_score")
# in place: sums[labels[i]] += maps[i], counts[labels[i]] += 1 (deterministic runs: the reference)
accumulate_class_sums = _op("accumulate_class_sums", _atomics_unavailable)
# fg (B, 1, H, W), mean_maps (C, H, W), labels (B,) -> scalar float32 L1 loss
mean_map_l1 = _op("mean_map_l1")
