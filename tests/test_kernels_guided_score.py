"""Triton ``guided_score`` (class maps x pooled fg, spatial mean) against the PyTorch reference.

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
# (B, C, h, w): odd sizes, a class loop of several blocks, 196 pixels (more than one block).
SHAPES = [(3, 5, 5, 5), (2, 70, 3, 7), (2, 3, 14, 14), (1, 1, 1, 1)]
# (class_maps dtype, pooled dtype)
DTYPES = [(torch.float32, torch.float32), (torch.bfloat16, torch.bfloat16), (torch.bfloat16, torch.float32)]
# channel_slice: every other channel; hw_transposed: dense, but h and w cannot be flattened into
# one dimension without a copy; batch_expanded: one sample broadcast over the batch (stride 0).
LAYOUTS = ["contiguous", "channels_last", "channel_slice", "hw_transposed", "batch_expanded"]


def _inputs(shape, maps_dtype, pooled_dtype, layout):
    generator = torch.Generator(device=DEVICE).manual_seed(sum(shape))
    batch, classes, height, width = shape
    if layout == "channel_slice":
        maps = torch.randn(batch, 2 * classes, height, width, device=DEVICE, generator=generator)[:, 1::2]
    elif layout == "hw_transposed":
        maps = torch.randn(batch, classes, width, height, device=DEVICE, generator=generator).transpose(2, 3)
    elif layout == "batch_expanded":
        maps = torch.randn(1, classes, height, width, device=DEVICE, generator=generator).expand(shape)
    else:
        maps = torch.randn(shape, device=DEVICE, generator=generator)
        if layout == "channels_last":
            maps = maps.contiguous(memory_format=torch.channels_last)
    pooled = torch.rand(batch, 1, height, width, device=DEVICE, generator=generator)
    grad = torch.randn(batch, classes, device=DEVICE, generator=generator)
    return maps.to(maps_dtype), pooled.to(pooled_dtype), grad


def _run(fn, maps, pooled, grad, needs_grad=(True, True)):
    """Forward and backward from ``grad``; returns (score, grad of maps, grad of pooled)."""
    maps = maps.detach().requires_grad_(needs_grad[0])
    pooled = pooled.detach().requires_grad_(needs_grad[1])
    score = fn(maps, pooled)
    score.backward(grad)
    return score, maps.grad, pooled.grad


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("maps_dtype, pooled_dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_backward_match_reference(shape, maps_dtype, pooled_dtype, layout):
    maps, pooled, grad = _inputs(shape, maps_dtype, pooled_dtype, layout)
    score, grad_maps, grad_pooled = _run(kernels.guided_score, maps, pooled, grad)
    expected, expected_grad_maps, expected_grad_pooled = _run(
        reference.guided_score, maps.float(), pooled.float(), grad)
    assert score.dtype == torch.float32
    assert grad_maps.dtype == maps_dtype and grad_pooled.dtype == pooled_dtype
    # float32 accumulation of exact products: the score is float32-accurate even from bfloat16.
    torch.testing.assert_close(score, expected, **TOLERANCES[torch.float32])
    torch.testing.assert_close(grad_maps.float(), expected_grad_maps, **TOLERANCES[maps_dtype])
    torch.testing.assert_close(grad_pooled.float(), expected_grad_pooled, **TOLERANCES[pooled_dtype])


def test_gradient_layout_follows_class_maps():
    maps, pooled, grad = _inputs((2, 6, 4, 4), torch.float32, torch.float32, "channels_last")
    _, grad_maps, _ = _run(kernels.guided_score, maps, pooled, grad)
    assert grad_maps.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("needs_grad", [(True, False), (False, True)])
def test_only_requested_gradients(needs_grad):
    maps, pooled, grad = _inputs((3, 9, 5, 6), torch.float32, torch.float32, "contiguous")
    _, grad_maps, grad_pooled = _run(kernels.guided_score, maps, pooled, grad, needs_grad)
    _, expected_grad_maps, expected_grad_pooled = _run(reference.guided_score, maps, pooled, grad, needs_grad)
    for got, expected in ((grad_maps, expected_grad_maps), (grad_pooled, expected_grad_pooled)):
        assert (got is None) == (expected is None)
        if got is not None:
            torch.testing.assert_close(got, expected, **TOLERANCES[torch.float32])


def test_mismatched_pooled_is_rejected():
    maps = torch.randn(2, 4, 6, 6, device=DEVICE)
    with pytest.raises(ValueError, match=r"pooled has shape \(3, 1, 6, 6\)"):
        kernels.guided_score(maps, torch.rand(3, 1, 6, 6, device=DEVICE))


# WSOL_FAST_OPS value -> whether the Triton kernel serves the call ("": unset, CUDA tensors only)
@pytest.mark.parametrize("backend, uses_kernel", [("triton", True), ("reference", False),
                                                  ("", DEVICE == "cuda")])
def test_dispatcher(monkeypatch, backend, uses_kernel):
    monkeypatch.setenv("WSOL_FAST_OPS", backend)
    maps, pooled, grad = _inputs((3, 5, 5, 5), torch.float32, torch.float32, "contiguous")
    score, grad_maps, grad_pooled = _run(training.guided_score, maps, pooled, grad)
    assert made_by_fused_op(score, "guided_score") == uses_kernel
    expected = _run(reference.guided_score, maps, pooled, grad)
    for got, want in zip((score, grad_maps, grad_pooled), expected):
        torch.testing.assert_close(got, want, **TOLERANCES[torch.float32])
