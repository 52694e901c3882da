"""The training ops' input checks are written once (``wsol_fast.ops.training_checks``): the
reference and the Triton kernel refuse each bad input with the same error."""
import pytest
import torch
from kernel_testing import DEVICE

from wsol_fast import kernels
from wsol_fast.ops import training_reference as reference


def _rand(*shape, dtype=torch.float32):
    return torch.rand(*shape, device=DEVICE).to(dtype)


def _labels(*values, dtype=torch.int64):
    return torch.tensor(values, device=DEVICE, dtype=dtype)


# (op, arguments, error type, message start)
BAD_INPUTS = [
    ("foreground_epilogue", lambda: (_rand(2, 1, 6, 5),), ValueError, "logits has odd spatial size 6x5"),
    ("foreground_epilogue", lambda: (_rand(2, 3, 6, 6),), ValueError, "logits has shape (2, 3, 6, 6)"),
    ("foreground_epilogue", lambda: (torch.ones(2, 1, 6, 6, dtype=torch.int32, device=DEVICE),), TypeError,
     "logits must be a floating tensor"),
    ("background_product", lambda: (_rand(2, 4, 6, 6), _rand(2, 1, 6, 5)), ValueError,
     "fg has shape (2, 1, 6, 5), expected (2, 1, 6, 6)"),
    ("background_product", lambda: (_rand(2, 4, 6), _rand(2, 1, 6, 6)), ValueError, "x4 has shape (2, 4, 6)"),
    ("guided_score", lambda: (_rand(3, 5, 4, 4), _rand(2, 1, 4, 4)), ValueError,
     "pooled has shape (2, 1, 4, 4), expected (3, 1, 4, 4)"),
    ("accumulate_class_sums", lambda: (_rand(4, 6, 6), torch.zeros(4, device=DEVICE), _rand(2, 6, 5), _labels(0, 1)),
     ValueError, "maps has shape (2, 6, 5), expected (*, 6, 6)"),
    ("accumulate_class_sums", lambda: (_rand(4, 6, 6, dtype=torch.float64), torch.zeros(4, device=DEVICE),
                                       _rand(2, 6, 6), _labels(0, 1)), TypeError, "sums must be a float32 tensor"),
    ("accumulate_class_sums", lambda: (_rand(4, 6, 6), torch.zeros(4, device=DEVICE, dtype=torch.int16),
                                       _rand(2, 6, 6), _labels(0, 1)), TypeError, "counts must be an int32"),
    ("accumulate_class_sums", lambda: (_rand(4, 6, 6), torch.zeros(4, device=DEVICE), _rand(2, 6, 6),
                                       _labels(0, 1, 2)), ValueError, "labels has shape (3,), expected (2)"),
    ("mean_map_l1", lambda: (_rand(2, 1, 6, 6), _rand(4, 6, 6), _labels(0, 1, dtype=torch.float32)), TypeError,
     "labels must be int32 or int64"),
    ("mean_map_l1", lambda: (_rand(0, 1, 6, 6), _rand(4, 6, 6), _labels()), ValueError, "fg is an empty batch"),
    ("mean_map_l1", lambda: (_rand(2, 1, 6, 6), _rand(4, 6, 6).requires_grad_(), _labels(0, 1)), ValueError,
     "mean_maps requires grad"),
    ("mean_map_l1", lambda: (_rand(2, 1, 6, 7), _rand(4, 6, 6), _labels(0, 1)), ValueError,
     "fg has shape (2, 1, 6, 7), expected (*, 1, 6, 6)"),
]


@pytest.mark.parametrize("op, make_inputs, error, message", BAD_INPUTS)
def test_reference_and_kernel_refuse_alike(op, make_inputs, error, message):
    raised = []
    for implementation in (reference, kernels):
        with pytest.raises(error) as info:
            getattr(implementation, op)(*make_inputs())
        raised.append(str(info.value))
    assert raised[0] == raised[1]
    assert raised[0].startswith(message)


@pytest.mark.skipif(DEVICE == "cuda", reason="a failed device assert would poison the CUDA context")
def test_labels_out_of_range_are_refused_by_both():
    for implementation in (reference, kernels):
        with pytest.raises(RuntimeError, match=r"labels out of range: every label must be in \[0, 4\)"):
            implementation.mean_map_l1(_rand(2, 1, 6, 6), _rand(4, 6, 6), _labels(0, 4))
