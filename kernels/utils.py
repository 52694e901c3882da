"""Launch helpers shared by the Triton kernels: the launch check, the launch device and
block-size choices.

``INTERPRETER`` is read once, when this package is imported, which is also when ``@triton.jit``
decides between compiled and interpreted kernels (``TRITON_INTERPRET=1``: kernels run on CPU
tensors through NumPy). Triton's own library functions (``tl.zeros``...) are decorated when
``triton.language`` is first imported, so the variable must be set before that, which any import
of torchvision or ``torch._dynamo`` already does.
"""
import contextlib

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

INTERPRETER: bool = bool(triton.knobs.runtime.interpret)
if INTERPRETER and not isinstance(tl.zeros, InterpretedFunction):
    raise ImportError(
        "TRITON_INTERPRET=1 was set after triton.language had been imported (torchvision and "
        "torch._dynamo import it): set it before the first import of torch/torchvision, "
        "e.g. at the top of tests/conftest.py")

PROGRAMS_PER_SM = 4
INTERPRETER_PROGRAMS = 8


def check_launchable(name: str, tensor: torch.Tensor) -> None:
    """Raise unless a kernel can reach ``tensor``: a CUDA tensor (any device under the
    interpreter). The ops' own input checks are ``wsol_fast.ops.training_checks``."""
    if not (tensor.is_cuda or INTERPRETER):
        raise ValueError(
            f"{name} is on {tensor.device}: Triton kernels need CUDA tensors "
            "(or TRITON_INTERPRET=1 set before importing wsol_fast.kernels)")


def on_device(tensor: torch.Tensor):
    """The context every launch runs in: ``tensor``'s GPU as the current device. Triton launches
    on the current device and stream, not the tensors' (on rank k, tensors live on cuda:k)."""
    return torch.cuda.device(tensor.device) if tensor.is_cuda else contextlib.nullcontext()


def tile_shape(channels: int, pixels: int, channel_stride: int, pixel_stride: int) -> tuple[int, int]:
    """(BLOCK_CHANNELS, BLOCK_PIXELS) for a tile of a (channels, pixels) plane: long along the
    dimension that is contiguous in memory, about 4096 elements in all."""
    if channel_stride == 1 and pixel_stride != 1:
        block_c, block_p = 128, 32
    else:
        block_c, block_p = 32, 128
    return (min(block_c, triton.next_power_of_2(channels)),
            min(block_p, triton.next_power_of_2(pixels)))


def target_programs(device: torch.device) -> int:
    """Programs a launch over a batch aims for: ``PROGRAMS_PER_SM`` per SM of a GPU (a batch of
    32 maps would leave most of 132 SMs idle); ``INTERPRETER_PROGRAMS`` under the interpreter,
    small so that tests run split launches quickly."""
    if device.type == "cuda":
        return PROGRAMS_PER_SM * torch.cuda.get_device_properties(device).multi_processor_count
    return INTERPRETER_PROGRAMS


def split_plan(batch: int, items: int, max_block: int, min_block: int, programs: int) -> tuple[int, int]:
    """(block, splits) for a launch of ``batch * splits`` programs over samples of ``items``
    elements: tiles of ``block`` elements (a power of two), and each sample's tiles dealt out to
    ``splits`` programs. While the batch has fewer tiles than ``programs``, the block halves
    (down to ``min_block``), then each sample takes up to ``programs / batch`` programs."""
    block = min(max_block, triton.next_power_of_2(items))
    while block > min_block and batch * triton.cdiv(items, block) < programs:
        block //= 2
    splits = min(triton.cdiv(items, block), max(1, triton.cdiv(programs, batch)))
    return block, splits


def num_warps(elements: int) -> int:
    """Warps for a tile of ``elements`` values: 256 per warp, between 1 and 8."""
    return max(1, min(8, elements // 256))
