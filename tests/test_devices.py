"""Multi-GPU device selection, checked with mocked CUDA: each process makes cuda:LOCAL_RANK its
current device before DeepSpeed (or any kernel) runs, and every Triton launch happens under its
input tensor's device (Triton launches on the current device, not the tensors')."""
import contextlib
import types

import pytest
import torch
from kernel_testing import DEVICE

from wsol_fast import kernels
from wsol_fast.engine import distributed
from wsol_fast.ops import training_reference as reference


def test_local_rank_becomes_the_current_device(monkeypatch):
    selected = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", selected.append)
    monkeypatch.setenv("LOCAL_RANK", "3")
    distributed.select_local_device()
    assert selected == [3]


def test_the_device_is_selected_before_deepspeed_starts(monkeypatch):
    order = []
    fake = types.SimpleNamespace(ops=types.SimpleNamespace(__compatible_ops__={}),
                                 init_distributed=lambda **kwargs: order.append("deepspeed"))
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed, "select_local_device", lambda: order.append("device"))
    monkeypatch.setattr(distributed, "deepspeed_module", lambda: fake)
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "1"), ("LOCAL_RANK", "1")):
        monkeypatch.setenv(name, value)
    distributed.init_process_group()
    assert order == ["device", "deepspeed"]


KERNEL_MODULES = ["background_product_kernel", "class_sums_kernel", "foreground_epilogue_kernel",
                  "guided_score_kernel", "mean_map_l1_kernel"]


@pytest.fixture
def launches(monkeypatch) -> list:
    """The devices the kernels' launches entered, in order."""
    entered = []

    def record(tensor):
        entered.append(tensor.device)
        return contextlib.nullcontext()

    for name in KERNEL_MODULES:
        monkeypatch.setattr(getattr(kernels, name), "on_device", record)
    return entered


def test_every_kernel_launches_under_its_inputs_device(launches):
    x4 = torch.randn(2, 5, 4, 6, device=DEVICE, requires_grad=True)
    logits = torch.randn(2, 1, 4, 6, device=DEVICE, requires_grad=True)
    labels = torch.tensor([1, 0], device=DEVICE)
    fg, area, pooled = kernels.foreground_epilogue(logits)
    bg = kernels.background_product(x4, fg)
    score = kernels.guided_score(torch.randn(2, 3, 2, 3, device=DEVICE, requires_grad=True), pooled)
    l1 = kernels.mean_map_l1(fg, torch.rand(2, 4, 6, device=DEVICE), labels)
    (bg.sum() + score.sum() + area.sum() + l1).backward()
    kernels.accumulate_class_sums(torch.zeros(2, 4, 6, device=DEVICE), torch.zeros(2, dtype=torch.int64,
                                  device=DEVICE), fg.detach()[:, 0], labels)
    assert len(launches) == 9, "5 forward launches, 4 backward"
    assert set(launches) == {torch.device(DEVICE)}
    torch.testing.assert_close(bg, reference.background_product(x4, fg))
