"""Mean-map L1: the late stage's pull of each foreground map toward its class's mean map, with
the gather of the mean map fused into the loss.

Shapes: fg (B, 1, H, W) any float dtype, mean_maps (C, H, W) any float dtype (a fixed buffer:
it must not require grad), labels (B,) int32/int64 in [0, C) -> loss () float32.

Forward:  loss = sum_{b,s} |fg[b, s] - mean_maps[labels[b], s]| / (B H W): one kernel writes each
          program's share (float32), a deterministic sum adds them.
Backward: dL/dfg[b, s] = dL/dloss sign(fg[b, s] - mean_maps[labels[b], s]) / (B H W) (sign 0 at
          0, as torch.abs), in fg's dtype; dL/dloss is read on the device, no host sync.
Layout: programs (sample, split), each looping over every splits-th pixel block of its sample.
"""
import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from .library import fused_op
from ..ops.training_checks import check_mean_map_l1
from .utils import check_launchable, num_warps, on_device, split_plan, target_programs


@triton.jit
def _forward_kernel(fg_ptr, mean_maps_ptr, labels_ptr, share_ptr, HW, N, BLOCK: tl.constexpr):
    sample = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    splits = tl.num_programs(1)
    label = tl.load(labels_ptr + sample).to(tl.int64)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for tile in range(split, tl.cdiv(HW, BLOCK), splits):
        s = tile * BLOCK + tl.arange(0, BLOCK)
        mask = s < HW
        fg = tl.load(fg_ptr + sample * HW + s, mask=mask, other=0.0).to(tl.float32)
        target = tl.load(mean_maps_ptr + label * HW + s, mask=mask, other=0.0).to(tl.float32)
        acc += tl.abs(fg - target)
    tl.store(share_ptr + sample * splits + split, tl.sum(acc, axis=0) / N)


@triton.jit
def _backward_kernel(fg_ptr, mean_maps_ptr, labels_ptr, grad_loss_ptr, grad_fg_ptr, HW, N,
                     BLOCK: tl.constexpr):
    sample = tl.program_id(0).to(tl.int64)
    label = tl.load(labels_ptr + sample).to(tl.int64)
    scale = tl.load(grad_loss_ptr).to(tl.float32) / N
    for tile in range(tl.program_id(1), tl.cdiv(HW, BLOCK), tl.num_programs(1)):
        s = tile * BLOCK + tl.arange(0, BLOCK)
        mask = s < HW
        fg = tl.load(fg_ptr + sample * HW + s, mask=mask, other=0.0).to(tl.float32)
        target = tl.load(mean_maps_ptr + label * HW + s, mask=mask, other=0.0).to(tl.float32)
        diff = fg - target
        sign = tl.where(diff > 0, 1.0, tl.where(diff < 0, -1.0, 0.0))
        tl.store(grad_fg_ptr + sample * HW + s, (scale * sign).to(grad_fg_ptr.dtype.element_ty), mask=mask)


def _launch_config(fg: torch.Tensor) -> tuple[tuple[int, int], int]:
    """(grid, BLOCK) for fg (B, 1, H, W): blocks of up to 1024 pixels, each sample split over
    several programs when the batch alone cannot fill the GPU."""
    batch = fg.shape[0]
    block, splits = split_plan(batch, fg.numel() // batch, max_block=1024, min_block=256,
                               programs=target_programs(fg.device))
    return (batch, splits), block


@fused_op("mean_map_l1", fake=lambda fg, mean_maps, labels: fg.new_empty((), dtype=torch.float32))
def _forward(fg: torch.Tensor, mean_maps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    fg = fg.contiguous()
    pixels = fg.numel() // fg.shape[0]
    grid, block = _launch_config(fg)
    share = torch.empty(grid, dtype=torch.float32, device=fg.device)
    with on_device(fg):
        wrap_triton(_forward_kernel)[grid](fg, mean_maps.contiguous(), labels, share, pixels, fg.numel(),
                                           BLOCK=block, num_warps=num_warps(block))
    return share.sum()


@fused_op("mean_map_l1_backward",
          fake=lambda grad_loss, fg, *args: torch.empty_like(fg, memory_format=torch.contiguous_format))
def _backward(grad_loss: torch.Tensor, fg: torch.Tensor, mean_maps: torch.Tensor,
              labels: torch.Tensor) -> torch.Tensor:
    """dL/dfg (fg's shape and dtype) from dL/dloss ()."""
    fg = fg.contiguous()
    pixels = fg.numel() // fg.shape[0]
    grad_fg = torch.empty_like(fg)
    grid, block = _launch_config(fg)
    with on_device(fg):
        wrap_triton(_backward_kernel)[grid](fg, mean_maps.contiguous(), labels, grad_loss.float().contiguous(),
                                            grad_fg, pixels, fg.numel(), BLOCK=block, num_warps=num_warps(block))
    return grad_fg


def _save_inputs(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _gradient(ctx, grad_loss):
    if not ctx.needs_input_grad[0]:
        return None, None, None
    return _backward(grad_loss, *ctx.saved_tensors), None, None


torch.library.register_autograd(_forward, _gradient, setup_context=_save_inputs)


def mean_map_l1(fg: torch.Tensor, mean_maps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``mean_b mean_pixels |fg_b - mean_maps[labels_b]|``: fg (B, 1, H, W), mean_maps (C, H, W)
    fixed, labels (B,) -> scalar float32; the gradient reaches fg only."""
    labels = check_mean_map_l1(fg, mean_maps, labels)
    check_launchable("fg", fg)
    return _forward(fg, mean_maps, labels)
