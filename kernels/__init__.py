"""Triton kernels for the BAS training hot path, imported as ``wsol_fast.kernels``.

One fused op per module: its kernels, its ``torch.library`` operator (``torch.ops.wsol_fast.*``,
see ``library.py``) with its gradient, and a checked entry point; the plain PyTorch definitions
they match are in ``wsol_fast.ops.training_reference``. Set
``TRITON_INTERPRET=1`` before importing this package to run the kernels on CPU tensors.
"""
from .background_product_kernel import background_product
from .class_sums_kernel import accumulate_class_sums
from .foreground_epilogue_kernel import foreground_epilogue
from .guided_score_kernel import guided_score
from .mean_map_l1_kernel import mean_map_l1

__all__ = [
    "accumulate_class_sums",
    "background_product",
    "foreground_epilogue",
    "guided_score",
    "mean_map_l1",
]
