"""Triton ``foreground_epilogue`` (sigmoid + area + 2x2 pool) against the PyTorch reference.

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
# (B, 1, H, W): odd batch, sizes that are no multiple of the block, one pixel quad, and a map
# whose 35*33 pooled pixels take two tiles of 1024.
SHAPES = [(3, 1, 6, 10), (2, 1, 28, 28), (1, 1, 2, 2), (2, 1, 70, 66)]


def _logits(shape, dtype, contiguous=True):
    torch.manual_seed(sum(shape))
    if contiguous:
        return (3 * torch.randn(shape, device=DEVICE)).to(dtype)
    wide = 3 * torch.randn(shape[0], 3, *shape[2:], device=DEVICE)
    return wide[:, 1:2].to(dtype)  # channel slice: not contiguous


def _run(fn, logits, outputs_used):
    """Forward with ``fn``, backward from fresh random gradients of the used outputs (seeded
    alike for both paths); returns (outputs, grad of logits)."""
    logits = logits.detach().requires_grad_()
    outputs = fn(logits)
    generator = torch.Generator(device=DEVICE).manual_seed(7)
    used = [outputs[i] for i in outputs_used]
    grads = [torch.randn(o.shape, device=DEVICE, generator=generator).to(o.dtype) for o in used]
    torch.autograd.backward(used, grads)
    return outputs, logits.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_backward_match_reference(shape, dtype):
    logits = _logits(shape, dtype)
    outputs, grad = _run(kernels.foreground_epilogue, logits, (0, 1, 2))
    expected, expected_grad = _run(reference.foreground_epilogue, logits.float(), (0, 1, 2))
    for name, out, ref in zip(("fg", "area", "pooled"), outputs, expected):
        assert out.dtype == dtype, name
        torch.testing.assert_close(out.float(), ref, **TOLERANCES[dtype], msg=name)
    assert grad.dtype == dtype
    torch.testing.assert_close(grad.float(), expected_grad, **TOLERANCES[dtype])


@pytest.mark.parametrize("outputs_used", [(0,), (1,), (2,), (1, 2)])
def test_backward_with_some_outputs_unused(outputs_used):
    logits = _logits((3, 1, 10, 6), torch.float32)
    _, grad = _run(kernels.foreground_epilogue, logits, outputs_used)
    _, expected_grad = _run(reference.foreground_epilogue, logits, outputs_used)
    torch.testing.assert_close(grad, expected_grad, **TOLERANCES[torch.float32])


def test_non_contiguous_logits():
    logits = _logits((3, 1, 6, 10), torch.float32, contiguous=False)
    assert not logits.is_contiguous()
    outputs, grad = _run(kernels.foreground_epilogue, logits, (0, 1, 2))
    expected, expected_grad = _run(reference.foreground_epilogue, logits, (0, 1, 2))
    for out, ref in zip(outputs, expected):
        torch.testing.assert_close(out, ref, **TOLERANCES[torch.float32])
    torch.testing.assert_close(grad, expected_grad, **TOLERANCES[torch.float32])


@pytest.mark.parametrize("shape", [(2, 1, 5, 6), (2, 1, 6, 7)])
def test_odd_spatial_size_is_rejected(shape):
    with pytest.raises(ValueError, match="odd spatial size"):
        kernels.foreground_epilogue(torch.randn(shape, device=DEVICE))


def test_more_than_one_channel_is_rejected():
    with pytest.raises(ValueError, match=r"logits has shape \(2, 3, 6, 6\)"):
        kernels.foreground_epilogue(torch.randn(2, 3, 6, 6, device=DEVICE))


# WSOL_FAST_OPS value -> whether the Triton kernel serves the call ("": unset, CUDA tensors only)
@pytest.mark.parametrize("backend, uses_kernel", [("triton", True), ("reference", False),
                                                  ("", DEVICE == "cuda")])
def test_dispatcher(monkeypatch, backend, uses_kernel):
    monkeypatch.setenv("WSOL_FAST_OPS", backend)
    logits = _logits((3, 1, 6, 10), torch.float32)
    outputs, grad = _run(training.foreground_epilogue, logits, (0, 1, 2))
    assert made_by_fused_op(outputs[0], "foreground_epilogue") == uses_kernel
    expected, expected_grad = _run(reference.foreground_epilogue, logits, (0, 1, 2))
    for out, ref in zip(outputs, expected):
        torch.testing.assert_close(out, ref, **TOLERANCES[torch.float32])
    torch.testing.assert_close(grad, expected_grad, **TOLERANCES[torch.float32])
