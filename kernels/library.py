"""The fused ops as ``torch.library`` operators (``torch.ops.wsol_fast.*``), so that
``torch.compile`` and ``torch.export`` see ops with schemas: no graph break, no guard on the
inputs' strides, gradients through ``torch.library.register_autograd``.

On a GPU each op is a ``triton_op``: Inductor traces its body and launches its kernels from the
code it generates. Under the interpreter a kernel cannot be traced (``wrap_triton`` hands the
interpreted kernel back unwrapped), so each op is an opaque ``custom_op`` whose ``fake`` gives
the outputs' shapes, dtypes and strides; compiled graphs then call it as it is.
"""
from collections.abc import Callable, Iterable

import torch

from .utils import INTERPRETER

NAMESPACE = "wsol_fast"


def fused_op(name: str, fake: Callable, mutates_args: Iterable[str] = ()) -> Callable:
    """Decorator: register ``body`` (type-annotated, launching its kernels through
    ``torch.library.wrap_triton``) as the operator ``wsol_fast::name``; ``fake`` takes the same
    arguments and allocates the outputs without computing them."""
    def register(body: Callable):
        qualified = f"{NAMESPACE}::{name}"
        if INTERPRETER:
            op = torch.library.custom_op(qualified, body, mutates_args=mutates_args)
            op.register_fake(fake)
            return op
        return torch.library.triton_op(qualified, body, mutates_args=mutates_args)
    return register
