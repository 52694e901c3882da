"""The kernels that take (B, 1, H, W) or (B, H, W) maps (foreground epilogue, mean-map L1, class
sums) against their references on dense, H/W-transposed, sliced and batch-expanded inputs,
forward and backward. (``background_product`` and ``guided_score`` test their own layouts.)
float32: rtol 1e-5, atol 1e-6."""
import pytest
import torch
from kernel_testing import DEVICE

from wsol_fast import kernels
from wsol_fast.ops import training_reference as reference

LAYOUTS = ["contiguous", "hw_transposed", "width_slice", "batch_expanded"]
B, H, W = 3, 6, 10


def maps_of(layout: str, seed: int, channels: int = 1) -> torch.Tensor:
    """(B, channels, H, W) float32 random values in the given layout."""
    generator = torch.Generator(device=DEVICE).manual_seed(seed)
    if layout == "hw_transposed":
        return torch.randn(B, channels, W, H, device=DEVICE, generator=generator).transpose(2, 3)
    if layout == "width_slice":
        return torch.randn(B, channels, H, 2 * W, device=DEVICE, generator=generator)[..., ::2]
    if layout == "batch_expanded":
        return torch.randn(1, channels, H, W, device=DEVICE, generator=generator).expand(B, channels, H, W)
    return torch.randn(B, channels, H, W, device=DEVICE, generator=generator)


def forward_backward(fn, inputs, grads):
    """Outputs of ``fn(*inputs)`` and the gradients of the inputs, from upstream ``grads``."""
    leaves = [x.detach().requires_grad_() for x in inputs]
    outputs = fn(*leaves)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    torch.autograd.backward(outputs, grads)
    return [o.detach() for o in outputs], [leaf.grad for leaf in leaves]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_foreground_epilogue(layout):
    logits = maps_of(layout, 1)
    grads = (maps_of(layout, 2), torch.randn(B, device=DEVICE), torch.randn(B, 1, H // 2, W // 2, device=DEVICE))
    outputs, (grad,) = forward_backward(kernels.foreground_epilogue, [logits], grads)
    expected, (expected_grad,) = forward_backward(reference.foreground_epilogue, [logits], grads)
    for out, ref in zip(outputs, expected):
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_mean_map_l1(layout):
    fg = torch.sigmoid(maps_of(layout, 3))
    mean_maps = torch.rand(4, H, W, device=DEVICE)
    labels = torch.tensor([3, 0, 3], device=DEVICE)
    grad = torch.tensor(1.7, device=DEVICE)
    (loss,), (grad_fg,) = forward_backward(lambda x: kernels.mean_map_l1(x, mean_maps, labels), [fg], (grad,))
    (expected,), (expected_grad,) = forward_backward(lambda x: reference.mean_map_l1(x, mean_maps, labels), [fg],
                                                     (grad,))
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad_fg, expected_grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_class_sums(layout):
    maps = maps_of(layout, 4)[:, 0]
    labels = torch.tensor([1, 1, 0], device=DEVICE)
    sums, counts = torch.zeros(2, H, W, device=DEVICE), torch.zeros(2, dtype=torch.int64, device=DEVICE)
    expected_sums, expected_counts = sums.clone(), counts.clone()
    kernels.accumulate_class_sums(sums, counts, maps, labels)
    reference.accumulate_class_sums(expected_sums, expected_counts, maps, labels)
    torch.testing.assert_close(sums, expected_sums, rtol=1e-5, atol=1e-6)
    assert torch.equal(counts, expected_counts)
