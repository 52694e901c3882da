"""The fused ops as ``torch.library`` operators (issue 18, item 8): ``torch.library.opcheck``
(schema, fake outputs against real ones, autograd registration, AOT dispatch with dynamic
shapes) on fresh random inputs of several layouts, and the training hot path compiled
(``fullgraph=True``: no graph break) forward and backward against eager reference ops.

Without CUDA the ops are opaque custom ops run by the Triton interpreter (kernels/library.py);
on a GPU they are ``triton_op``s whose kernels Inductor compiles. float32: rtol 1e-5, atol 1e-6.
"""
import pytest
import torch
from kernel_testing import DEVICE

from wsol_fast import kernels
from wsol_fast.kernels import library
from wsol_fast.ops import training_reference as reference

TOLERANCE = dict(rtol=1e-5, atol=1e-6)
OPS = torch.ops.wsol_fast


def _random(*shape, seed, requires_grad=False, channels_last=False):
    generator = torch.Generator(device=DEVICE).manual_seed(seed)
    x = torch.randn(*shape, device=DEVICE, generator=generator)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    return x.requires_grad_(requires_grad)


def _opcheck_cases():
    """(op, args) with inputs that need gradients, in contiguous and other layouts."""
    labels = torch.tensor([2, 0, 2], device=DEVICE)
    maps = _random(3, 5, 7, seed=5)
    return [
        ("foreground_epilogue", (_random(3, 1, 6, 10, seed=1, requires_grad=True),)),
        ("foreground_epilogue", (_random(2, 1, 10, 6, seed=2, requires_grad=True).transpose(2, 3),)),
        ("background_product", (_random(3, 8, 5, 7, seed=3),
                                _random(3, 1, 5, 7, seed=4, requires_grad=True))),
        ("background_product", (_random(3, 8, 5, 7, seed=3, channels_last=True),
                                _random(3, 1, 5, 7, seed=4, requires_grad=True))),
        ("guided_score", (_random(3, 9, 5, 7, seed=6, requires_grad=True),
                          _random(3, 1, 5, 7, seed=7, requires_grad=True))),
        ("guided_score", (_random(3, 9, 5, 7, seed=6, requires_grad=True, channels_last=True),
                          _random(3, 1, 5, 7, seed=7, requires_grad=True))),
        ("mean_map_l1", (_random(3, 1, 5, 7, seed=8, requires_grad=True), maps, labels)),
        ("accumulate_class_sums", (torch.zeros(3, 5, 7, device=DEVICE),
                                   torch.zeros(3, device=DEVICE, dtype=torch.int64),
                                   _random(4, 5, 7, seed=9), torch.tensor([1, 2, 1, 0], device=DEVICE))),
    ]


@pytest.mark.parametrize("index", range(len(_opcheck_cases())))
def test_opcheck(index):
    name, args = _opcheck_cases()[index]
    torch.library.opcheck(getattr(OPS, name).default, args)


def test_every_op_is_registered_in_the_namespace():
    names = {"foreground_epilogue", "background_product", "guided_score", "mean_map_l1",
             "accumulate_class_sums"}
    for name in names | {f"{n}_backward" for n in names - {"accumulate_class_sums"}}:
        assert hasattr(OPS, name), name
    assert library.NAMESPACE == "wsol_fast"


def _hot_path(ops, logits, x4, class_maps, mean_maps, labels):
    """The late stage's use of the fused ops, reduced to one scalar."""
    fg, area, pooled = ops.foreground_epilogue(logits)
    background = ops.background_product(x4, fg)
    score = ops.guided_score(class_maps, pooled)
    pull = ops.mean_map_l1(fg, mean_maps, labels)
    return background.square().mean() + score.sin().sum() + area.sum() + pull


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compiled_hot_path_matches_eager_reference(backend):
    torch._dynamo.reset()
    labels = torch.tensor([1, 0, 1], device=DEVICE)
    inputs = [_random(3, 1, 8, 6, seed=11), _random(3, 4, 8, 6, seed=12, channels_last=True),
              _random(3, 5, 4, 3, seed=13), torch.rand(2, 8, 6, device=DEVICE), labels]
    trainable = (0, 1, 2)
    results = []
    for ops, compiled in ((kernels, True), (reference, False)):
        leaves = [x.detach().clone().requires_grad_(i in trainable) if x.is_floating_point() else x
                  for i, x in enumerate(inputs)]
        fn = torch.compile(_hot_path, backend=backend, fullgraph=True) if compiled else _hot_path
        loss = fn(ops, *leaves)
        loss.backward()
        results.append([loss] + [leaves[i].grad for i in trainable])
    for name, out, ref in zip(("loss", "logits", "x4", "class_maps"), *results):
        if name == "x4":
            assert out is None and ref is None  # background_product detaches x4
            continue
        torch.testing.assert_close(out, ref, **TOLERANCE, msg=name)
