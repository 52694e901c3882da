"""Training-step ops, dispatched: Triton for CUDA tensors (or ``WSOL_FAST_OPS=triton``), the
PyTorch reference otherwise. Signatures and shapes are those of ``training_reference``."""
from . import training_reference as reference
from .dispatch import forced_backend


def _use_triton(tensor) -> bool:
    backend = forced_backend()
    if backend is not None:
        return backend == "triton"
    return False  # Triton kernels are wired in by the Triton issue.


def foreground_epilogue(logits):
    return reference.foreground_epilogue(logits)


def background_product(x4, fg):
    return reference.background_product(x4, fg)


def guided_score(class_maps, pooled_fg):
    return reference.guided_score(class_maps, pooled_fg)


def accumulate_class_sums(sums, counts, maps, labels):
    return reference.accumulate_class_sums(sums, counts, maps, labels)


def mean_map_l1(fg, mean_maps, labels):
    return reference.mean_map_l1(fg, mean_maps, labels)
