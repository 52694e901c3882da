"""One rule picks every op's implementation (``wsol_fast.ops.registry``), and ``WSOL_FAST_OPS``
means the same for training and evaluation ops alike."""
import pytest
import torch

from wsol_fast.ops import evaluation, ext, training
from wsol_fast.ops.registry import FastPath, Op


def reference(x):
    return "reference"


def fast(x):
    return "fast"


def op_with(reason=None, warn=False):
    """A toy op whose ``ext`` path is unavailable for ``reason`` (None: available)."""
    return Op("toy", reference, FastPath("ext", fast, lambda tensor, forced: reason, warn))


@pytest.mark.parametrize("forced, reason, expected", [
    ("", None, "fast"), ("", "not built", "reference"),
    ("reference", None, "reference"), ("ext", None, "fast"),
    ("triton", None, "reference"),  # the op has no triton path: its reference
])
def test_the_rule(monkeypatch, forced, reason, expected):
    monkeypatch.setenv("WSOL_FAST_OPS", forced)
    assert op_with(reason)(torch.zeros(1)) == expected


def test_a_forced_backend_that_cannot_serve_says_why(monkeypatch):
    monkeypatch.setenv("WSOL_FAST_OPS", "ext")
    with pytest.raises(RuntimeError, match="WSOL_FAST_OPS=ext: toy cannot run on cpu tensors: not built"):
        op_with("not built")(torch.zeros(1))


def test_falling_back_is_said_where_the_path_asks(monkeypatch):
    monkeypatch.delenv("WSOL_FAST_OPS", raising=False)
    with pytest.warns(RuntimeWarning, match="toy runs the slow PyTorch reference: not built"):
        assert op_with("not built", warn=True)(torch.zeros(1)) == "reference"


def test_unknown_backend_is_refused(monkeypatch):
    monkeypatch.setenv("WSOL_FAST_OPS", "cuda")
    with pytest.raises(ValueError, match="WSOL_FAST_OPS='cuda': expected one of reference, triton, ext"):
        op_with()(torch.zeros(1))


@pytest.mark.parametrize("forced, training_backend, evaluation_backend", [
    ("", "reference", "ext"),  # CPU tensors: the kernels serve CUDA tensors only
    ("reference", "reference", "reference"),
    ("triton", "triton", "reference"),  # TRITON_INTERPRET=1 runs the kernels on the CPU
    ("ext", "reference", "ext"),
])
def test_one_meaning_for_training_and_evaluation_ops(monkeypatch, forced, training_backend, evaluation_backend):
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # CPU tensors here, on a GPU host too
    monkeypatch.setenv("WSOL_FAST_OPS", forced)
    tensor = torch.zeros(2, 1, 4, 4)
    assert training.foreground_epilogue.backend_for(tensor) == training_backend
    assert evaluation.largest_component_boxes.backend_for(tensor[:, 0]) == evaluation_backend


def test_deterministic_runs_keep_the_atomics_kernel_out(monkeypatch):
    torch.use_deterministic_algorithms(True)
    monkeypatch.setenv("WSOL_FAST_OPS", "triton")
    with pytest.raises(RuntimeError, match="deterministic algorithms are on"):
        training.accumulate_class_sums.pick(torch.zeros(2, 4, 4))
    monkeypatch.setenv("WSOL_FAST_OPS", "")
    assert training.accumulate_class_sums.backend_for(torch.zeros(2, 4, 4)) == "reference"


def test_the_extension_unbuilt_for_a_device_is_named(monkeypatch):
    monkeypatch.setattr(ext, "available", lambda: False)
    assert "not built for cpu tensors" in evaluation.extension_unavailable(torch.zeros(1, 2, 2), False)
    monkeypatch.setenv("WSOL_FAST_OPS", "ext")
    with pytest.raises(RuntimeError, match="WSOL_FAST_OPS=ext: percentile_max_normalize cannot run"):
        evaluation.normalize(torch.rand(1, 4, 4), "percentile:99")
