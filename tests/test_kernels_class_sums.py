"""Triton ``accumulate_class_sums`` (atomic scatter-add of maps per class) against ``index_add_``.

Without CUDA the kernel runs in the Triton interpreter on CPU tensors (its atomics are float32
even for bfloat16 maps, so both dtypes run there). Tolerance: rtol 1e-5 / atol 1e-6 (float32
sums; only the order of the atomic adds differs); counts exactly.
"""
import pytest
import torch
from kernel_testing import DEVICE

from wsol_fast import kernels
from wsol_fast.ops import training, training_reference as reference
TOLERANCE = dict(rtol=1e-5, atol=1e-6)
# (B, C, H, W): more samples than classes (labels repeat), 1600 pixels (two blocks), one pixel.
SHAPES = [(13, 5, 6, 10), (4, 3, 40, 40), (3, 1, 1, 1)]


def _inputs(shape, maps_dtype, counts_dtype, labels_dtype=torch.int64):
    generator = torch.Generator(device=DEVICE).manual_seed(sum(shape))
    batch, classes, height, width = shape
    sums = torch.randn(classes, height, width, device=DEVICE, generator=generator)
    counts = torch.randint(0, 9, (classes,), device=DEVICE, generator=generator).to(counts_dtype)
    maps = torch.rand(batch, height, width, device=DEVICE, generator=generator).to(maps_dtype)
    labels = torch.randint(0, classes, (batch,), device=DEVICE, generator=generator).to(labels_dtype)
    return sums, counts, maps, labels


def _accumulate(fn, sums, counts, maps, labels):
    sums, counts = sums.clone(), counts.clone()
    fn(sums, counts, maps, labels)
    return sums, counts


@pytest.mark.parametrize("counts_dtype", [torch.int64, torch.float32])
@pytest.mark.parametrize("maps_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_index_add(shape, maps_dtype, counts_dtype):
    sums, counts, maps, labels = _inputs(shape, maps_dtype, counts_dtype)
    assert labels.unique().numel() < labels.numel()  # repeated labels
    got_sums, got_counts = _accumulate(kernels.accumulate_class_sums, sums, counts, maps, labels)
    want_sums, want_counts = _accumulate(reference.accumulate_class_sums, sums, counts, maps, labels)
    torch.testing.assert_close(got_sums, want_sums, **TOLERANCE)
    assert got_counts.dtype == counts_dtype
    assert torch.equal(got_counts, want_counts)


def test_int32_labels_and_non_contiguous_maps():
    sums, counts, _, labels = _inputs((13, 5, 6, 10), torch.float32, torch.int64, torch.int32)
    maps = torch.rand(13, 10, 6, device=DEVICE).transpose(1, 2)
    assert not maps.is_contiguous()
    got = _accumulate(kernels.accumulate_class_sums, sums, counts, maps, labels)
    want = _accumulate(reference.accumulate_class_sums, sums, counts, maps, labels.long())
    torch.testing.assert_close(got[0], want[0], **TOLERANCE)
    assert torch.equal(got[1], want[1])


@pytest.mark.skipif(DEVICE == "cuda", reason="a failed device assert would poison the CUDA context")
@pytest.mark.parametrize("bad_label", [-1, 5])
def test_label_out_of_range_is_rejected(bad_label):
    sums, counts, maps, labels = _inputs((13, 5, 6, 10), torch.float32, torch.int64)
    labels[4] = bad_label
    with pytest.raises(RuntimeError, match=r"labels out of range: every label must be in \[0, 5\)"):
        kernels.accumulate_class_sums(sums, counts, maps, labels)


def test_bad_buffers_are_rejected():
    sums, counts, maps, labels = _inputs((13, 5, 6, 10), torch.float32, torch.int64)
    with pytest.raises(TypeError, match="sums must be a float32 tensor"):
        kernels.accumulate_class_sums(sums.double(), counts, maps, labels)
    with pytest.raises(ValueError, match="sums must be contiguous"):
        kernels.accumulate_class_sums(sums.transpose(1, 2).contiguous().transpose(1, 2), counts, maps, labels)
    with pytest.raises(TypeError, match="counts must be"):
        kernels.accumulate_class_sums(sums, counts.to(torch.int16), maps, labels)
    with pytest.raises(ValueError, match=r"maps has shape \(13, 6, 9\), expected \(\*, 6, 10\)"):
        kernels.accumulate_class_sums(sums, counts, maps[:, :, :9], labels)
    with pytest.raises(ValueError, match=r"labels has shape \(12,\)"):
        kernels.accumulate_class_sums(sums, counts, maps, labels[:12])


# WSOL_FAST_OPS value -> whether the Triton kernel serves the call ("": unset, CUDA tensors only)
@pytest.mark.parametrize("backend, uses_kernel", [("triton", True), ("reference", False),
                                                  ("", DEVICE == "cuda")])
def test_dispatcher(monkeypatch, backend, uses_kernel):
    calls = []
    kernel = kernels.accumulate_class_sums
    monkeypatch.setattr(kernels, "accumulate_class_sums", lambda *args: calls.append(1) or kernel(*args))
    monkeypatch.setenv("WSOL_FAST_OPS", backend)
    sums, counts, maps, labels = _inputs((13, 5, 6, 10), torch.float32, torch.int64)
    got = _accumulate(training.accumulate_class_sums, sums, counts, maps, labels)
    want = _accumulate(reference.accumulate_class_sums, sums, counts, maps, labels)
    assert bool(calls) == uses_kernel
    torch.testing.assert_close(got[0], want[0], **TOLERANCE)
    assert torch.equal(got[1], want[1])
