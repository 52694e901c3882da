"""Training-step ops, dispatched: Triton for CUDA tensors (or ``WSOL_FAST_OPS=triton``), the
PyTorch reference otherwise. Signatures and shapes are those of ``training_reference``."""
import functools

import torch

from . import training_reference as reference
from .dispatch import forced_backend


@functools.cache
def _triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _use_triton(tensor: torch.Tensor) -> bool:
    """Triton when forced by ``WSOL_FAST_OPS=triton``; when nothing is forced, for CUDA tensors
    if triton imports."""
    backend = forced_backend()
    if backend is not None:
        return backend == "triton"
    return tensor.is_cuda and _triton_importable()


def _kernels():
    """``wsol_fast.kernels``, imported on first use so that ``TRITON_INTERPRET`` set by then
    is honoured and CPU-only runs never import triton."""
    from wsol_fast import kernels
    return kernels


def foreground_epilogue(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """logits (B, 1, H, W) -> fg (B, 1, H, W), area (B,), pooled (B, 1, H/2, W/2)."""
    if _use_triton(logits):
        return _kernels().foreground_epilogue(logits)
    return reference.foreground_epilogue(logits)


def background_product(x4: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
    """``detach(x4) * (1 - fg)``: x4 (B, K, H, W), fg (B, 1, H, W) -> (B, K, H, W)."""
    if _use_triton(x4):
        return _kernels().background_product(x4, fg)
    return reference.background_product(x4, fg)


def guided_score(class_maps: torch.Tensor, pooled_fg: torch.Tensor) -> torch.Tensor:
    """class maps (B, C, h, w), pooled fg (B, 1, h, w) -> (B, C) float32."""
    if _use_triton(class_maps):
        return _kernels().guided_score(class_maps, pooled_fg)
    return reference.guided_score(class_maps, pooled_fg)


def accumulate_class_sums(sums: torch.Tensor, counts: torch.Tensor, maps: torch.Tensor,
                          labels: torch.Tensor) -> None:
    """In place: ``sums[labels[i]] += maps[i]``, ``counts[labels[i]] += 1``. Deterministic
    algorithms (``--deterministic``) take the reference: the kernel adds floats with atomics."""
    if _use_triton(maps) and not torch.are_deterministic_algorithms_enabled():
        return _kernels().accumulate_class_sums(sums, counts, maps, labels)
    return reference.accumulate_class_sums(sums, counts, maps, labels)


def mean_map_l1(fg: torch.Tensor, mean_maps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """fg (B, 1, H, W), mean_maps (C, H, W), labels (B,) -> scalar float32 L1 loss."""
    if _use_triton(fg):
        return _kernels().mean_map_l1(fg, mean_maps, labels)
    return reference.mean_map_l1(fg, mean_maps, labels)
