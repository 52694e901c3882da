"""Split launches: ``foreground_epilogue`` and ``mean_map_l1`` spread each sample over several
programs when the batch is small (issue 18, item 9). The launch planner, then both kernels under
targets of 1 program (one per sample), 8 and 1000 (every tile its own program, and more programs
wanted than tiles) against their references, forward and backward, on maps of several tiles.
float32: rtol 1e-5, atol 1e-6."""
import pytest
import torch
from kernel_testing import DEVICE

from wsol_fast import kernels
from wsol_fast.kernels import foreground_epilogue_kernel, mean_map_l1_kernel, utils
from wsol_fast.ops import training_reference as reference

TOLERANCE = dict(rtol=1e-5, atol=1e-6)
PROGRAM_TARGETS = [1, 8, 1000]


@pytest.mark.parametrize("batch, items, programs, expected", [
    (32, 196, 528, (64, 4)),      # 28x28 pooled quads, 132 SMs: block halves to the floor, 4 splits
    (1, 100_000, 528, (128, 528)),  # one big map: as many programs as wanted
    (1024, 196, 528, (256, 1)),   # a batch that fills the GPU alone: one program per sample
    (2, 10, 8, (16, 1)),          # one tile: nothing to split
    (3, 10_000, 8, (1024, 3)),    # 10 tiles a sample, dealt out to ceil(programs / batch)
])
def test_split_plan(batch, items, programs, expected):
    assert utils.split_plan(batch, items, max_block=1024, min_block=64, programs=programs) == expected


def test_target_programs_follow_the_sm_count(monkeypatch):
    class Properties:
        multi_processor_count = 132
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: Properties)
    assert utils.target_programs(torch.device("cuda", 1)) == 132 * utils.PROGRAMS_PER_SM
    assert utils.target_programs(torch.device("cpu")) == utils.INTERPRETER_PROGRAMS


def _launches(monkeypatch, module, programs: int) -> list:
    """Fix ``module``'s program target and record the grid of each launch it plans."""
    monkeypatch.setattr(module, "target_programs", lambda device: programs)
    grids = []
    plan = module._launch_config

    def recorded(*args):
        config = plan(*args)
        grids.append(config[0])
        return config
    monkeypatch.setattr(module, "_launch_config", recorded)
    return grids


@pytest.mark.parametrize("programs", PROGRAM_TARGETS)
def test_foreground_epilogue(monkeypatch, programs):
    grids = _launches(monkeypatch, foreground_epilogue_kernel, programs)
    generator = torch.Generator(device=DEVICE).manual_seed(programs)
    logits = 3 * torch.randn(2, 1, 46, 42, device=DEVICE, generator=generator)  # 483 quads
    upstream = (torch.randn(2, 1, 46, 42, device=DEVICE, generator=generator),
                torch.randn(2, device=DEVICE, generator=generator),
                torch.randn(2, 1, 23, 21, device=DEVICE, generator=generator))
    results = []
    for fn in (kernels.foreground_epilogue, reference.foreground_epilogue):
        leaf = logits.clone().requires_grad_()
        outputs = fn(leaf)
        torch.autograd.backward(outputs, upstream)
        results.append((*outputs, leaf.grad))
    for name, out, ref in zip(("fg", "area", "pooled", "grad"), *results):
        torch.testing.assert_close(out, ref, **TOLERANCE, msg=name)
    expected_splits = {1: 1, 8: 4, 1000: 8}[programs]  # 483 quads: 1 tile of 512, 8 of 64
    assert grids == [(2, expected_splits)] * 2


@pytest.mark.parametrize("programs", PROGRAM_TARGETS)
def test_mean_map_l1(monkeypatch, programs):
    grids = _launches(monkeypatch, mean_map_l1_kernel, programs)
    generator = torch.Generator(device=DEVICE).manual_seed(programs)
    fg = torch.rand(3, 1, 50, 41, device=DEVICE, generator=generator)  # 2050 pixels
    mean_maps = torch.rand(4, 50, 41, device=DEVICE, generator=generator)
    labels = torch.tensor([3, 0, 3], device=DEVICE)
    upstream = torch.randn((), device=DEVICE, generator=generator)
    results = []
    for fn in (kernels.mean_map_l1, reference.mean_map_l1):
        leaf = fg.clone().requires_grad_()
        loss = fn(leaf, mean_maps, labels)
        loss.backward(upstream)
        results.append((loss, leaf.grad))
    for name, out, ref in zip(("loss", "grad"), *results):
        torch.testing.assert_close(out, ref, **TOLERANCE, msg=name)
    expected_splits = {1: 1, 8: 3, 1000: 9}[programs]  # 2050 pixels: 3 tiles of 1024, 9 of 256
    assert grids == [(3, expected_splits)] * 2
