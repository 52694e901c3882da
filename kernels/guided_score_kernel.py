"""Foreground-guided score (score2 of BAS): class maps weighted by the pooled foreground map,
averaged over space.

Shapes: class_maps (B, C, h, w) in any float dtype and memory layout, pooled (B, 1, h, w) ->
score (B, C) float32.

Forward:  score[b, c] = sum_s class_maps[b, c, s] pooled[b, s] / (h w), float32 accumulation.
Backward: dL/dclass_maps[b, c, s] = dL/dscore[b, c] pooled[b, s] / (h w)   (class_maps' dtype
          and layout), dL/dpooled[b, s] = sum_c dL/dscore[b, c] class_maps[b, c, s] / (h w)
          (pooled's dtype), both from one kernel that reads class_maps once; only the gradients
          autograd asks for are computed.
Layout: spatial dims flattened (s = y w + x) through strides; the forward gives each program a
channel block and loops over pixels, the backward gives each a pixel block and loops over channels.
"""
import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from .library import fused_op
from ..ops.training_checks import check_guided_score
from .utils import check_launchable, num_warps, on_device, tile_shape


@triton.jit
def _forward_kernel(maps_ptr, pooled_ptr, score_ptr, C, HW, maps_stride_b, maps_stride_c,
                    maps_stride_s, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    sample = tl.program_id(1).to(tl.int64)
    c_mask = c < C
    acc = tl.zeros([BLOCK_C, BLOCK_S], dtype=tl.float32)
    for s_start in range(0, HW, BLOCK_S):
        s = s_start + tl.arange(0, BLOCK_S)
        s_mask = s < HW
        pooled = tl.load(pooled_ptr + sample * HW + s, mask=s_mask, other=0.0).to(tl.float32)
        maps = tl.load(maps_ptr + sample * maps_stride_b + c[:, None] * maps_stride_c
                       + s[None, :] * maps_stride_s, mask=c_mask[:, None] & s_mask[None, :], other=0.0)
        acc += maps.to(tl.float32) * pooled[None, :]
    tl.store(score_ptr + sample * C + c, tl.sum(acc, axis=1) / HW, mask=c_mask)


@triton.jit
def _backward_kernel(grad_ptr, maps_ptr, pooled_ptr, grad_maps_ptr, grad_pooled_ptr, C, HW,
                     maps_stride_b, maps_stride_c, maps_stride_s,
                     grad_maps_stride_b, grad_maps_stride_c, grad_maps_stride_s,
                     NEEDS_GRAD_MAPS: tl.constexpr, NEEDS_GRAD_POOLED: tl.constexpr,
                     BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    s = tl.program_id(0) * BLOCK_S + tl.arange(0, BLOCK_S)
    sample = tl.program_id(1).to(tl.int64)
    s_mask = s < HW
    pooled = tl.load(pooled_ptr + sample * HW + s, mask=s_mask, other=0.0).to(tl.float32) / HW
    acc = tl.zeros([BLOCK_C, BLOCK_S], dtype=tl.float32)
    for c_start in range(0, C, BLOCK_C):
        c = c_start + tl.arange(0, BLOCK_C)
        c_mask = c < C
        mask = c_mask[:, None] & s_mask[None, :]
        grad = tl.load(grad_ptr + sample * C + c, mask=c_mask, other=0.0)
        if NEEDS_GRAD_MAPS:
            grad_maps = grad[:, None] * pooled[None, :]
            tl.store(grad_maps_ptr + sample * grad_maps_stride_b + c[:, None] * grad_maps_stride_c
                     + s[None, :] * grad_maps_stride_s,
                     grad_maps.to(grad_maps_ptr.dtype.element_ty), mask=mask)
        if NEEDS_GRAD_POOLED:
            maps = tl.load(maps_ptr + sample * maps_stride_b + c[:, None] * maps_stride_c
                           + s[None, :] * maps_stride_s, mask=mask, other=0.0)
            acc += grad[:, None] * maps.to(tl.float32)
    if NEEDS_GRAD_POOLED:
        grad_pooled = tl.sum(acc, axis=0) / HW
        tl.store(grad_pooled_ptr + sample * HW + s, grad_pooled.to(grad_pooled_ptr.dtype.element_ty),
                 mask=s_mask)


def _score(class_maps: torch.Tensor) -> torch.Tensor:
    """An uninitialized score (B, C) float32."""
    return torch.empty(class_maps.shape[:2], dtype=torch.float32, device=class_maps.device)


@fused_op("guided_score", fake=lambda class_maps, pooled: _score(class_maps))
def _forward(class_maps: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
    batch, classes, height, width = class_maps.shape
    pixels = height * width
    maps = class_maps.flatten(2)  # a view for contiguous and channels-last layouts
    score = _score(class_maps)
    block_c, block_s = tile_shape(classes, pixels, maps.stride(1), maps.stride(2))
    grid = (triton.cdiv(classes, block_c), batch)
    with on_device(maps):
        wrap_triton(_forward_kernel)[grid](
            maps, pooled.contiguous(), score, classes, pixels, *maps.stride(),
            BLOCK_C=block_c, BLOCK_S=block_s, num_warps=num_warps(block_c * block_s))
    return score


def _allocate_gradients(class_maps, pooled, needs_grad_maps, needs_grad_pooled):
    """Uninitialized (dL/dclass_maps in the flattened maps' layout, so the 4-d view never
    copies; dL/dpooled); an input autograd does not ask about gets an empty tensor."""
    maps = class_maps.flatten(2)
    grad_maps = torch.empty_like(maps).view(class_maps.shape) if needs_grad_maps else maps.new_empty(0)
    grad_pooled = (torch.empty_like(pooled, memory_format=torch.contiguous_format) if needs_grad_pooled
                   else pooled.new_empty(0))
    return grad_maps, grad_pooled


@fused_op("guided_score_backward", fake=lambda grad_score, *args: _allocate_gradients(*args))
def _backward(grad_score: torch.Tensor, class_maps: torch.Tensor, pooled: torch.Tensor,
              needs_grad_maps: bool, needs_grad_pooled: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(dL/dclass_maps, dL/dpooled) from dL/dscore, each empty unless asked for."""
    batch, classes, height, width = class_maps.shape
    pixels = height * width
    maps, pooled = class_maps.flatten(2), pooled.contiguous()
    grad_maps, grad_pooled = _allocate_gradients(class_maps, pooled, needs_grad_maps, needs_grad_pooled)
    grad_maps_flat = grad_maps.flatten(2) if needs_grad_maps else maps
    block_c, block_s = tile_shape(classes, pixels, maps.stride(1), maps.stride(2))
    grid = (triton.cdiv(pixels, block_s), batch)
    with on_device(maps):
        wrap_triton(_backward_kernel)[grid](
            grad_score.float().contiguous(), maps, pooled, grad_maps_flat,
            grad_pooled if needs_grad_pooled else pooled, classes, pixels,
            *maps.stride(), *grad_maps_flat.stride(),
            NEEDS_GRAD_MAPS=needs_grad_maps, NEEDS_GRAD_POOLED=needs_grad_pooled,
            BLOCK_C=block_c, BLOCK_S=block_s, num_warps=num_warps(block_c * block_s))
    return grad_maps, grad_pooled


def _save_inputs(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _gradient(ctx, grad_score):
    needs_grad_maps, needs_grad_pooled = ctx.needs_input_grad
    if not (needs_grad_maps or needs_grad_pooled):
        return None, None
    grad_maps, grad_pooled = _backward(grad_score, *ctx.saved_tensors, needs_grad_maps, needs_grad_pooled)
    return grad_maps if needs_grad_maps else None, grad_pooled if needs_grad_pooled else None


torch.library.register_autograd(_forward, _gradient, setup_context=_save_inputs)


def guided_score(class_maps: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
    """Class maps (B, C, h, w) times pooled foreground (B, 1, h, w), spatial mean ->
    (B, C) float32."""
    check_guided_score(class_maps, pooled)
    check_launchable("class_maps", class_maps)
    return _forward(class_maps, pooled)
