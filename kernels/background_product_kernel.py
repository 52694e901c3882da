"""Background product: the input of BAS's background branch, ``detach(x4) * (1 - fg)``.

Shapes: x4 (B, K, H, W) in any float dtype and memory layout (contiguous, channels-last,
expanded), fg (B, 1, H, W) -> out (B, K, H, W) in x4's dtype and layout.

Forward:  out[b, k, s] = x4[b, k, s] (1 - fg[b, s]), one rounding from float32.
Backward: dL/dfg[b, s] = -sum_k dL/dout[b, k, s] x4[b, k, s], accumulated in float32, stored in
          fg's dtype; x4 gets no gradient (it is detached, as in the reference).
Layout: spatial dims flattened (s = h W + w) through strides; the forward tiles the
(channel, pixel) plane of each sample, the backward gives each program a pixel block and loops
over all channels.
"""
import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from .library import fused_op
from ..ops.training_checks import check_background_product
from .utils import check_launchable, num_warps, on_device, tile_shape


@triton.jit
def _forward_kernel(x_ptr, fg_ptr, out_ptr, K, HW,
                    x_stride_b, x_stride_k, x_stride_s, out_stride_b, out_stride_k, out_stride_s,
                    BLOCK_K: tl.constexpr, BLOCK_S: tl.constexpr):
    s = tl.program_id(0) * BLOCK_S + tl.arange(0, BLOCK_S)
    k = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    sample = tl.program_id(2).to(tl.int64)
    s_mask = s < HW
    mask = (k < K)[:, None] & s_mask[None, :]
    keep = 1.0 - tl.load(fg_ptr + sample * HW + s, mask=s_mask, other=0.0).to(tl.float32)
    x = tl.load(x_ptr + sample * x_stride_b + k[:, None] * x_stride_k + s[None, :] * x_stride_s,
                mask=mask, other=0.0).to(tl.float32)
    out = x * keep[None, :]
    tl.store(out_ptr + sample * out_stride_b + k[:, None] * out_stride_k + s[None, :] * out_stride_s,
             out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _backward_kernel(grad_ptr, x_ptr, grad_fg_ptr, K, HW,
                     grad_stride_b, grad_stride_k, grad_stride_s, x_stride_b, x_stride_k, x_stride_s,
                     BLOCK_K: tl.constexpr, BLOCK_S: tl.constexpr):
    s = tl.program_id(0) * BLOCK_S + tl.arange(0, BLOCK_S)
    sample = tl.program_id(1).to(tl.int64)
    s_mask = s < HW
    acc = tl.zeros([BLOCK_K, BLOCK_S], dtype=tl.float32)
    for k_start in range(0, K, BLOCK_K):
        k = k_start + tl.arange(0, BLOCK_K)
        mask = (k < K)[:, None] & s_mask[None, :]
        grad = tl.load(grad_ptr + sample * grad_stride_b + k[:, None] * grad_stride_k
                       + s[None, :] * grad_stride_s, mask=mask, other=0.0)
        x = tl.load(x_ptr + sample * x_stride_b + k[:, None] * x_stride_k + s[None, :] * x_stride_s,
                    mask=mask, other=0.0)
        acc += grad.to(tl.float32) * x.to(tl.float32)
    grad_fg = -tl.sum(acc, axis=0)
    tl.store(grad_fg_ptr + sample * HW + s, grad_fg.to(grad_fg_ptr.dtype.element_ty), mask=s_mask)


def _allocate(x4: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x4 flattened to (B, K, H W) (a view for contiguous and channels-last layouts, else a
    copy) and an uninitialized output of its layout (so the (B, K, H, W) view never copies)."""
    x = x4.flatten(2)
    return x, torch.empty_like(x)


@fused_op("background_product", fake=lambda x4, fg: _allocate(x4)[1].view(x4.shape))
def _forward(x4: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
    batch, channels, height, width = x4.shape
    pixels = height * width
    x, out_flat = _allocate(x4)
    block_k, block_s = tile_shape(channels, pixels, x.stride(1), x.stride(2))
    grid = (triton.cdiv(pixels, block_s), triton.cdiv(channels, block_k), batch)
    with on_device(x):
        wrap_triton(_forward_kernel)[grid](
            x, fg.contiguous(), out_flat, channels, pixels, *x.stride(), *out_flat.stride(),
            BLOCK_K=block_k, BLOCK_S=block_s, num_warps=num_warps(block_k * block_s))
    return out_flat.view(x4.shape)


@fused_op("background_product_backward",
          fake=lambda grad_out, x4, fg: torch.empty_like(fg, memory_format=torch.contiguous_format))
def _backward(grad_out: torch.Tensor, x4: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
    """dL/dfg (fg's shape and dtype) from dL/dout and x4."""
    channels, height, width = x4.shape[1:]
    pixels = height * width
    x, grad = x4.flatten(2), grad_out.flatten(2)
    grad_fg = torch.empty_like(fg, memory_format=torch.contiguous_format)
    block_k, block_s = tile_shape(channels, pixels, x.stride(1), x.stride(2))
    grid = (triton.cdiv(pixels, block_s), x4.shape[0])
    with on_device(x):
        wrap_triton(_backward_kernel)[grid](
            grad, x, grad_fg, channels, pixels, *grad.stride(), *x.stride(),
            BLOCK_K=block_k, BLOCK_S=block_s, num_warps=num_warps(block_k * block_s))
    return grad_fg


def _save_inputs(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _gradient(ctx, grad_out):
    if not ctx.needs_input_grad[1]:
        return None, None
    return None, _backward(grad_out, *ctx.saved_tensors)


torch.library.register_autograd(_forward, _gradient, setup_context=_save_inputs)


def background_product(x4: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
    """``detach(x4) * (1 - fg)``: x4 (B, K, H, W), fg (B, 1, H, W) -> (B, K, H, W) in x4's
    dtype and memory layout (contiguous or channels-last; other layouts give a contiguous
    result); the gradient reaches fg only."""
    check_background_product(x4, fg)
    check_launchable("x4", x4)
    return _forward(x4.detach(), fg)
