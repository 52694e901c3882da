"""Triton ``background_product`` (detach(x4) * (1 - fg), gradient to fg) against the reference.

Without CUDA the kernels run in the Triton interpreter on CPU tensors. Tolerances: float32
rtol 1e-5 / atol 1e-6; bfloat16 inputs are compared with the reference computed in float32 from
the same bfloat16 values, rtol 1e-2 / atol 1e-3 (one bfloat16 rounding of the result).
"""
import pytest
import torch
from kernel_testing import DEVICE, made_by_fused_op

from wsol_fast import kernels
from wsol_fast.ops import training, training_reference as reference
TOLERANCES = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.bfloat16: dict(rtol=1e-2, atol=1e-3)}
# (B, K, H, W): odd sizes, a channel loop of several blocks, a pixel count above one block.
SHAPES = [(3, 7, 6, 10), (2, 70, 5, 5), (2, 3, 14, 14), (1, 1, 1, 1)]
# (x4 dtype, fg dtype)
DTYPES = [(torch.float32, torch.float32), (torch.bfloat16, torch.bfloat16), (torch.bfloat16, torch.float32)]
# channel_slice: every other channel; hw_transposed: dense, but H and W cannot be flattened into
# one dimension without a copy; batch_expanded: one sample broadcast over the batch (stride 0).
LAYOUTS = ["contiguous", "channels_last", "channel_slice", "hw_transposed", "batch_expanded"]


def _tensor(shape, dtype, layout="contiguous", seed=0):
    generator = torch.Generator(device=DEVICE).manual_seed(seed)
    if layout == "channel_slice":
        wide = torch.randn(shape[0], 2 * shape[1], *shape[2:], device=DEVICE, generator=generator)
        return wide[:, ::2].to(dtype)
    if layout == "hw_transposed":
        return torch.randn(*shape[:2], shape[3], shape[2], device=DEVICE, generator=generator).to(dtype).transpose(2, 3)
    if layout == "batch_expanded":
        return torch.randn(1, *shape[1:], device=DEVICE, generator=generator).to(dtype).expand(shape)
    tensor = torch.randn(shape, device=DEVICE, generator=generator).to(dtype)
    if layout == "channels_last":
        return tensor.contiguous(memory_format=torch.channels_last)
    return tensor


def _inputs(shape, x_dtype, fg_dtype, layout):
    x4 = _tensor(shape, x_dtype, layout, seed=1)
    fg = torch.rand(shape[0], 1, *shape[2:], device=DEVICE,
                    generator=torch.Generator(device=DEVICE).manual_seed(2)).to(fg_dtype)
    grad = _tensor(shape, x_dtype, layout, seed=3)
    return x4, fg, grad


def _run(fn, x4, fg, grad):
    """Forward and backward from ``grad``; returns (out, grad of fg, grad of x4)."""
    x4 = x4.detach().requires_grad_()
    fg = fg.detach().requires_grad_()
    out = fn(x4, fg)
    out.backward(grad)
    return out, fg.grad, x4.grad


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("x_dtype, fg_dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_backward_match_reference(shape, x_dtype, fg_dtype, layout):
    x4, fg, grad = _inputs(shape, x_dtype, fg_dtype, layout)
    out, grad_fg, grad_x4 = _run(kernels.background_product, x4, fg, grad)
    expected, expected_grad_fg, _ = _run(reference.background_product, x4.float(), fg.float(), grad.float())
    assert out.dtype == x_dtype and grad_fg.dtype == fg_dtype
    assert grad_x4 is None
    torch.testing.assert_close(out.float(), expected, **TOLERANCES[x_dtype])
    # grad_fg sums K products per pixel in another order than the reference: atol grows as sqrt(K)
    tolerance = TOLERANCES[fg_dtype]
    torch.testing.assert_close(grad_fg.float(), expected_grad_fg, rtol=tolerance["rtol"],
                               atol=tolerance["atol"] * max(1.0, shape[1] ** 0.5))


def test_output_keeps_channels_last():
    x4, fg, _ = _inputs((2, 8, 6, 6), torch.float32, torch.float32, "channels_last")
    assert kernels.background_product(x4, fg).is_contiguous(memory_format=torch.channels_last)


def test_expanded_upstream_gradient():
    x4, fg, _ = _inputs((2, 5, 6, 10), torch.float32, torch.float32, "contiguous")
    grad = torch.randn((), device=DEVICE).expand(x4.shape)  # all strides 0, as from out.sum()
    _, grad_fg, _ = _run(kernels.background_product, x4, fg, grad)
    _, expected_grad_fg, _ = _run(reference.background_product, x4, fg, grad)
    torch.testing.assert_close(grad_fg, expected_grad_fg, **TOLERANCES[torch.float32])


def test_mismatched_fg_is_rejected():
    x4 = torch.randn(2, 4, 6, 6, device=DEVICE)
    with pytest.raises(ValueError, match=r"fg has shape \(2, 1, 6, 5\)"):
        kernels.background_product(x4, torch.rand(2, 1, 6, 5, device=DEVICE))


# WSOL_FAST_OPS value -> whether the Triton kernel serves the call ("": unset, CUDA tensors only)
@pytest.mark.parametrize("backend, uses_kernel", [("triton", True), ("reference", False),
                                                  ("", DEVICE == "cuda")])
def test_dispatcher(monkeypatch, backend, uses_kernel):
    monkeypatch.setenv("WSOL_FAST_OPS", backend)
    x4, fg, grad = _inputs((3, 7, 6, 10), torch.float32, torch.float32, "contiguous")
    out, grad_fg, _ = _run(training.background_product, x4, fg, grad)
    assert made_by_fused_op(out, "background_product") == uses_kernel
    expected, expected_grad_fg, _ = _run(reference.background_product, x4, fg, grad)
    torch.testing.assert_close(out, expected, **TOLERANCES[torch.float32])
    torch.testing.assert_close(grad_fg, expected_grad_fg, **TOLERANCES[torch.float32])
