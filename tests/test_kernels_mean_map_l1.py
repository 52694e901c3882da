"""Triton ``mean_map_l1`` (gather class-mean map, |fg - mean|, mean) against the reference.

Without CUDA the kernels run in the Triton interpreter on CPU tensors. Tolerances: the loss is
float32 from any input dtype (rtol 1e-5 / atol 1e-6 against the reference computed in float32
from the same values); the gradient ±g/(B H W) is exact up to one rounding to fg's dtype
(bfloat16: rtol 1e-2 / atol 1e-3).
"""
import pytest
import torch
from kernel_testing import DEVICE, made_by_fused_op

from wsol_fast import kernels
from wsol_fast.ops import training, training_reference as reference
TOLERANCES = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.bfloat16: dict(rtol=1e-2, atol=1e-3)}
# (B, C, H, W): more samples than classes (labels repeat), 1600 pixels (two blocks), one pixel.
SHAPES = [(7, 5, 6, 10), (3, 2, 40, 40), (1, 1, 1, 1)]


def _inputs(shape, fg_dtype, maps_dtype):
    generator = torch.Generator(device=DEVICE).manual_seed(sum(shape))
    batch, classes, height, width = shape
    fg = torch.rand(batch, 1, height, width, device=DEVICE, generator=generator).to(fg_dtype)
    mean_maps = torch.rand(classes, height, width, device=DEVICE, generator=generator).to(maps_dtype)
    labels = torch.randint(0, classes, (batch,), device=DEVICE, generator=generator)
    grad = torch.randn((), device=DEVICE, generator=generator)
    return fg, mean_maps, labels, grad


def _run(fn, fg, mean_maps, labels, grad):
    """Forward and backward from ``grad``; returns (loss, grad of fg)."""
    fg = fg.detach().requires_grad_()
    loss = fn(fg, mean_maps, labels)
    loss.backward(grad)
    return loss, fg.grad


@pytest.mark.parametrize("fg_dtype, maps_dtype", [(torch.float32, torch.float32),
                                                  (torch.bfloat16, torch.bfloat16),
                                                  (torch.bfloat16, torch.float32)])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_backward_match_reference(shape, fg_dtype, maps_dtype):
    fg, mean_maps, labels, grad = _inputs(shape, fg_dtype, maps_dtype)
    loss, grad_fg = _run(kernels.mean_map_l1, fg, mean_maps, labels, grad)
    expected, expected_grad = _run(reference.mean_map_l1, fg.float(), mean_maps.float(), labels, grad)
    assert loss.dtype == torch.float32 and loss.shape == ()
    assert grad_fg.dtype == fg_dtype
    torch.testing.assert_close(loss, expected, **TOLERANCES[torch.float32])
    torch.testing.assert_close(grad_fg.float(), expected_grad, **TOLERANCES[fg_dtype])


def test_gradient_is_zero_where_fg_equals_its_mean_map():
    fg, mean_maps, labels, grad = _inputs((7, 5, 6, 10), torch.float32, torch.float32)
    fg[:, 0, 2] = mean_maps[labels, 2]  # one row of every map ties with its target
    loss, grad_fg = _run(kernels.mean_map_l1, fg, mean_maps, labels, grad)
    expected, expected_grad = _run(reference.mean_map_l1, fg, mean_maps, labels, grad)
    assert torch.all(grad_fg[:, 0, 2] == 0)
    torch.testing.assert_close(loss, expected, **TOLERANCES[torch.float32])
    torch.testing.assert_close(grad_fg, expected_grad, **TOLERANCES[torch.float32])


def test_int32_labels_and_non_contiguous_fg():
    fg, mean_maps, labels, grad = _inputs((7, 5, 6, 10), torch.float32, torch.float32)
    fg = fg.transpose(2, 3).contiguous().transpose(2, 3)
    assert not fg.is_contiguous()
    got = _run(kernels.mean_map_l1, fg, mean_maps, labels.int(), grad)
    want = _run(reference.mean_map_l1, fg, mean_maps, labels, grad)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **TOLERANCES[torch.float32])


def test_bad_inputs_are_rejected():
    fg, mean_maps, labels, _ = _inputs((7, 5, 6, 10), torch.float32, torch.float32)
    with pytest.raises(ValueError, match="mean_maps requires grad"):
        kernels.mean_map_l1(fg, mean_maps.requires_grad_(), labels)
    mean_maps.requires_grad_(False)
    with pytest.raises(ValueError, match=r"fg has shape \(7, 1, 6, 9\), expected \(\*, 1, 6, 10\)"):
        kernels.mean_map_l1(fg[..., :9], mean_maps, labels)
    with pytest.raises(TypeError, match="labels must be int32 or int64"):
        kernels.mean_map_l1(fg, mean_maps, labels.float())


@pytest.mark.skipif(DEVICE == "cuda", reason="a failed device assert would poison the CUDA context")
def test_label_out_of_range_is_rejected():
    fg, mean_maps, labels, _ = _inputs((7, 5, 6, 10), torch.float32, torch.float32)
    labels[3] = 5
    with pytest.raises(RuntimeError, match="labels out of range"):
        kernels.mean_map_l1(fg, mean_maps, labels)


# WSOL_FAST_OPS value -> whether the Triton kernel serves the call ("": unset, CUDA tensors only)
@pytest.mark.parametrize("backend, uses_kernel", [("triton", True), ("reference", False),
                                                  ("", DEVICE == "cuda")])
def test_dispatcher(monkeypatch, backend, uses_kernel):
    monkeypatch.setenv("WSOL_FAST_OPS", backend)
    fg, mean_maps, labels, grad = _inputs((7, 5, 6, 10), torch.float32, torch.float32)
    loss, grad_fg = _run(training.mean_map_l1, fg, mean_maps, labels, grad)
    assert made_by_fused_op(loss, "mean_map_l1") == uses_kernel
    expected, expected_grad = _run(reference.mean_map_l1, fg, mean_maps, labels, grad)
    torch.testing.assert_close(loss, expected, **TOLERANCES[torch.float32])
    torch.testing.assert_close(grad_fg, expected_grad, **TOLERANCES[torch.float32])
