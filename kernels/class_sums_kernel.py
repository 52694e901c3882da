"""Class sums: the scatter-add of the late stage's mean-map pass, in place, with atomics.

Shapes: sums (C, H, W) float32 contiguous, counts (C,) int32/int64/float32/float64 contiguous,
maps (B, H, W) any float dtype, labels (B,) int32/int64 in [0, C).

Math: sums[labels[b]] += maps[b] (float32 atomic adds), counts[labels[b]] += 1. Repeated labels
are fine; the float32 sums depend on the order of the atomics only to rounding. Forward only.
Layout: program (pixel block, sample); the first pixel block of each sample bumps the count.
"""
import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from .library import fused_op
from ..ops.training_checks import check_class_sums
from .utils import check_launchable, num_warps, on_device



@triton.jit
def _scatter_kernel(maps_ptr, labels_ptr, sums_ptr, counts_ptr, HW, BLOCK: tl.constexpr):
    block = tl.program_id(0)
    sample = tl.program_id(1).to(tl.int64)
    label = tl.load(labels_ptr + sample).to(tl.int64)
    s = block * BLOCK + tl.arange(0, BLOCK)
    mask = s < HW
    values = tl.load(maps_ptr + sample * HW + s, mask=mask, other=0.0).to(tl.float32)
    tl.atomic_add(sums_ptr + label * HW + s, values, mask=mask, sem="relaxed")
    if block == 0:
        tl.atomic_add(counts_ptr + label, 1, sem="relaxed")


@fused_op("accumulate_class_sums", fake=lambda sums, counts, maps, labels: None,
          mutates_args=("sums", "counts"))
def _scatter(sums: torch.Tensor, counts: torch.Tensor, maps: torch.Tensor, labels: torch.Tensor) -> None:
    pixels = maps.shape[1] * maps.shape[2]
    block = min(1024, triton.next_power_of_2(pixels))
    with on_device(maps):
        wrap_triton(_scatter_kernel)[(triton.cdiv(pixels, block), maps.shape[0])](
            maps.contiguous(), labels, sums, counts, pixels, BLOCK=block, num_warps=num_warps(block))


def accumulate_class_sums(sums: torch.Tensor, counts: torch.Tensor, maps: torch.Tensor,
                          labels: torch.Tensor) -> None:
    """In place: ``sums[labels[i]] += maps[i]`` and ``counts[labels[i]] += 1``.
    sums (C, H, W) float32, counts (C,), maps (B, H, W), labels (B,) int64/int32."""
    labels = check_class_sums(sums, counts, maps, labels)
    check_launchable("maps", maps)
    for name, buffer in (("sums", sums), ("counts", counts)):
        if not buffer.is_contiguous():
            raise ValueError(f"{name} must be contiguous: the kernel adds into it in place")
    if maps.shape[0] == 0:
        return
    _scatter(sums, counts, maps.detach(), labels)
