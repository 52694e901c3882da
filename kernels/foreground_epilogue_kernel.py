"""Foreground epilogue: sigmoid of the ground-truth class's generator logits, its per-sample
area and its 2x2 average pool, in one kernel each way.

Shapes: logits (B, 1, H, W), H and W even, any float dtype -> fg (B, 1, H, W), area (B,),
pooled (B, 1, H/2, W/2), all in the logits' dtype; the math is float32.

Forward:  fg = sigmoid(x);  area[b] = mean_{h,w} fg[b];  pooled = avgpool2x2(fg).
Backward: dL/dx = fg (1 - fg) (dL/dfg + dL/darea[b] / (H W) + dL/dpooled[h//2, w//2] / 4),
          with fg recomputed from x; an upstream gradient autograd leaves out is skipped, not
          read as zeros.
Layout: programs (sample, split), each looping over every splits-th tile of (pooled pixel, 2x2
quad) of its sample: the pool is a sum over the tile's last axis; each program writes its share
of the area (float32), and a deterministic sum over the splits adds them.
"""
import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from .library import fused_op
from ..ops.training_checks import check_foreground_epilogue
from .utils import check_launchable, num_warps, on_device, split_plan, target_programs


@triton.jit
def _quad_tile(p_start, W, P, BLOCK_P: tl.constexpr):
    """Pooled-pixel indices (BLOCK_P,), full-resolution offsets (BLOCK_P, 4) of their 2x2 quads,
    and the tile's mask."""
    p = p_start + tl.arange(0, BLOCK_P)
    half_w = W // 2
    row = 2 * (p // half_w)
    col = 2 * (p % half_w)
    q = tl.arange(0, 4)
    offsets = (row[:, None] + q[None, :] // 2) * W + col[:, None] + q[None, :] % 2
    mask = (p < P)[:, None] & (q < 4)[None, :]
    return p, offsets, mask


@triton.jit
def _forward_kernel(logits_ptr, fg_ptr, partial_area_ptr, pooled_ptr, W, HW, P,
                    BLOCK_P: tl.constexpr):
    sample = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    splits = tl.num_programs(1)
    total = tl.zeros([BLOCK_P], dtype=tl.float32)
    for tile in range(split, tl.cdiv(P, BLOCK_P), splits):
        p, offsets, mask = _quad_tile(tile * BLOCK_P, W, P, BLOCK_P)
        x = tl.load(logits_ptr + sample * HW + offsets, mask=mask, other=0.0).to(tl.float32)
        fg = tl.where(mask, tl.sigmoid(x), 0.0)
        tl.store(fg_ptr + sample * HW + offsets, fg.to(fg_ptr.dtype.element_ty), mask=mask)
        quad_sum = tl.sum(fg, axis=1)
        tl.store(pooled_ptr + sample * P + p, (quad_sum * 0.25).to(pooled_ptr.dtype.element_ty),
                 mask=p < P)
        total += quad_sum
    tl.store(partial_area_ptr + sample * splits + split, tl.sum(total, axis=0))


@triton.jit
def _backward_kernel(logits_ptr, grad_fg_ptr, grad_area_ptr, grad_pooled_ptr, grad_logits_ptr,
                     W, HW, P, HAS_GRAD_FG: tl.constexpr, HAS_GRAD_AREA: tl.constexpr,
                     HAS_GRAD_POOLED: tl.constexpr, BLOCK_P: tl.constexpr):
    sample = tl.program_id(0).to(tl.int64)
    grad_area = 0.0
    if HAS_GRAD_AREA:
        grad_area = tl.load(grad_area_ptr + sample).to(tl.float32) / HW
    for tile in range(tl.program_id(1), tl.cdiv(P, BLOCK_P), tl.num_programs(1)):
        p, offsets, mask = _quad_tile(tile * BLOCK_P, W, P, BLOCK_P)
        fg = tl.sigmoid(tl.load(logits_ptr + sample * HW + offsets, mask=mask, other=0.0).to(tl.float32))
        grad = tl.zeros([BLOCK_P, 4], dtype=tl.float32) + grad_area
        if HAS_GRAD_FG:
            grad += tl.load(grad_fg_ptr + sample * HW + offsets, mask=mask, other=0.0).to(tl.float32)
        if HAS_GRAD_POOLED:
            grad_pooled = tl.load(grad_pooled_ptr + sample * P + p, mask=p < P, other=0.0)
            grad += (grad_pooled.to(tl.float32) * 0.25)[:, None]
        grad_logits = grad * fg * (1.0 - fg)
        tl.store(grad_logits_ptr + sample * HW + offsets,
                 grad_logits.to(grad_logits_ptr.dtype.element_ty), mask=mask)


def _launch_config(logits: torch.Tensor) -> tuple[tuple[int, int], int, int]:
    """(grid, BLOCK_P, warps) for logits (B, 1, H, W): tiles of up to 1024 quads, each sample
    split over several programs when the batch alone cannot fill the GPU."""
    batch, _, height, width = logits.shape
    block_p, splits = split_plan(batch, height * width // 4, max_block=1024, min_block=64,
                                 programs=target_programs(logits.device))
    return (batch, splits), block_p, num_warps(4 * block_p)


def _allocate(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Uninitialized fg (B, 1, H, W), area (B,), pooled (B, 1, H/2, W/2) for contiguous logits."""
    batch, _, height, width = logits.shape
    return (torch.empty_like(logits), logits.new_empty(batch),
            logits.new_empty(batch, 1, height // 2, width // 2))


@fused_op("foreground_epilogue", fake=lambda logits: _allocate(logits.contiguous()))
def _forward(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    logits = logits.contiguous()
    height, width = logits.shape[2:]
    fg, _, pooled = _allocate(logits)
    grid, block_p, warps = _launch_config(logits)
    partial_area = torch.empty(grid, dtype=torch.float32, device=logits.device)
    with on_device(logits):
        wrap_triton(_forward_kernel)[grid](logits, fg, partial_area, pooled, width, height * width,
                                           height * width // 4, BLOCK_P=block_p, num_warps=warps)
    return fg, (partial_area.sum(1) / (height * width)).to(logits.dtype), pooled


@fused_op("foreground_epilogue_backward",
          fake=lambda logits, *grads: torch.empty_like(logits, memory_format=torch.contiguous_format))
def _backward(logits: torch.Tensor, grad_fg: torch.Tensor | None, grad_area: torch.Tensor | None,
              grad_pooled: torch.Tensor | None) -> torch.Tensor:
    """dL/dlogits from the upstream gradients autograd has (None: that output is unused)."""
    logits = logits.contiguous()
    height, width = logits.shape[2:]
    grad_logits = torch.empty_like(logits)
    grid, block_p, warps = _launch_config(logits)
    with on_device(logits):
        wrap_triton(_backward_kernel)[grid](
            logits,
            grad_fg.contiguous() if grad_fg is not None else logits,
            grad_area.contiguous() if grad_area is not None else logits,
            grad_pooled.contiguous() if grad_pooled is not None else logits,
            grad_logits, width, height * width, height * width // 4,
            HAS_GRAD_FG=grad_fg is not None, HAS_GRAD_AREA=grad_area is not None,
            HAS_GRAD_POOLED=grad_pooled is not None, BLOCK_P=block_p, num_warps=warps)
    return grad_logits


def _save_logits(ctx, inputs, output) -> None:
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(inputs[0])


def _gradient(ctx, grad_fg, grad_area, grad_pooled):
    if grad_fg is None and grad_area is None and grad_pooled is None:
        return None
    return _backward(*ctx.saved_tensors, grad_fg, grad_area, grad_pooled)


torch.library.register_autograd(_forward, _gradient, setup_context=_save_logits)


def foreground_epilogue(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Generator logits of one class per sample (B, 1, H, W), H and W even ->
    fg (B, 1, H, W) in (0, 1), area (B,), pooled (B, 1, H/2, W/2), in the logits' dtype."""
    check_foreground_epilogue(logits)
    check_launchable("logits", logits)
    return _forward(logits)
