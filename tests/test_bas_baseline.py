"""The BAS-style baseline of the throughput benchmark computes what the project computes: the
same early and late losses, the same weight gradients, the same step (through ``TrainStep``),
the same evaluation maps and mean-map sums, on the same weights and fresh random inputs.

The two sides differ only in summation order (all-C generator vs the label's taps, loops vs
gathers), which BatchNorm's weight gradients (sums that nearly cancel) amplify in float32; the
model comparisons therefore run in float64, where the project's losses still cast to float32.
Tolerances: losses rtol 1e-5 / atol 1e-6; gradients and updated weights rtol 1e-5 / atol 1e-5 x
the largest magnitude of the reference tensor.
"""
import copy
import sys
from pathlib import Path

import pytest
import torch

from wsol_fast import losses, ops
from wsol_fast.config import OptimConfig
from wsol_fast.engine.evaluate import localization_maps
from wsol_fast.engine.optim import build_optimizer
from wsol_fast.engine.step import PlainEngine, StepOptions, TrainStep
from wsol_fast.models import MobileNetBAS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bas_baseline import (  # noqa: E402
    bas_accumulate_class_sums,
    bas_early_loss,
    bas_eval_forward,
    bas_forward,
    bas_late_loss,
)

LOSS_TOL = dict(rtol=1e-5, atol=1e-6, check_dtype=False)  # the project casts losses to float32
CLASSES = 7


def assert_close_scaled(actual: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    atol = 1e-5 * float(expected.detach().abs().max()) if expected.is_floating_point() else 0
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=atol, msg=lambda m: f"{name}: {m}")


def fresh_inputs(seed: int, batch: int = 3, size: int = 48):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, size, size, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, CLASSES, (batch,), generator=generator)
    labels[0] = labels[-1]  # a repeated label
    mean_maps = torch.rand(CLASSES, size // 8, size // 8, generator=generator, dtype=torch.float64)
    return images, labels, mean_maps


def model_pair(seed: int):
    torch.manual_seed(seed)
    model = MobileNetBAS(CLASSES, 0.25).double().train()
    return model, copy.deepcopy(model)


def losses_and_grads(model, images, labels, mean_maps, stage, baseline):
    if baseline:
        out = bas_forward(model, images, labels)
        total, parts = (bas_early_loss(out, labels) if stage == "early"
                        else bas_late_loss(out, labels, mean_maps))
    else:
        out = model(images, labels)
        total, parts = (losses.early_loss(out, labels) if stage == "early"
                        else losses.late_loss(out, labels, mean_maps))
    total.backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    return total.detach(), {k: v.detach() for k, v in parts.items()}, grads


@pytest.mark.parametrize("stage", ["early", "late"])
@pytest.mark.parametrize("seed", [0, 1])
def test_same_losses_and_weight_gradients(stage, seed):
    images, labels, mean_maps = fresh_inputs(seed)
    project, baseline = model_pair(seed)
    ref_total, ref_parts, ref_grads = losses_and_grads(project, images, labels, mean_maps, stage, baseline=False)
    total, parts, grads = losses_and_grads(baseline, images, labels, mean_maps, stage, baseline=True)
    torch.testing.assert_close(total, ref_total, **LOSS_TOL)
    assert parts.keys() == ref_parts.keys()
    for name in parts:
        torch.testing.assert_close(parts[name], ref_parts[name], **LOSS_TOL, msg=name)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        assert_close_scaled(grads[name], ref_grads[name], name)
    # The deep copies' BatchNorm never touches the real running statistics.
    for (key, value), ref_value in zip(baseline.state_dict().items(), project.state_dict().values()):
        assert_close_scaled(value, ref_value, key)


def test_background_ratio_rule_hits_both_branches():
    """Inputs where some samples have S_bg >= S (r := 0) and others not, so the per-sample
    Python ``if`` of the baseline and the project's ``where`` are both exercised."""
    images, labels, _ = fresh_inputs(2, batch=6)
    project, baseline = model_pair(2)
    out = project(images, labels)
    s = out.score1.gather(1, labels[:, None]).squeeze(1)
    with torch.no_grad():  # scale the background scores to straddle S
        out.score_bg.copy_(s * torch.tensor([0.5, 1.5, 0.9, 1.0, 2.0, 0.1]))
    base_out = bas_forward(baseline, images, labels)
    with torch.no_grad():
        base_out.score_bg.copy_(out.score_bg)
    torch.testing.assert_close(bas_early_loss(base_out, labels)[1]["bg"], losses.early_loss(out, labels)[1]["bg"],
                               **LOSS_TOL)


@pytest.mark.parametrize("stage,channels_last", [("early", False), ("late", False), ("early", True)])
def test_train_step_equals_baseline_step(stage, channels_last):
    """One ``TrainStep`` (forward, loss, backward, SGD; NCHW or channels_last) lands on the same
    weights as one baseline step with the same optimizer recipe."""
    images, labels, mean_maps = fresh_inputs(3)
    project, baseline = model_pair(3)
    options = StepOptions(stage=stage, channels_last=channels_last)
    step = TrainStep(PlainEngine(project, build_optimizer(project, OptimConfig(lr=0.1))), options, mean_maps)
    results = step.step(images, labels)
    optimizer = build_optimizer(baseline, OptimConfig(lr=0.1))
    out = bas_forward(baseline, images, labels)
    total, _ = bas_early_loss(out, labels) if stage == "early" else bas_late_loss(out, labels, mean_maps)
    total.backward()
    optimizer.step()
    torch.testing.assert_close(results["loss"], total.detach(), **LOSS_TOL)
    assert all(not value.requires_grad and value.dim() == 0 for value in results.values())
    assert int(results["correct"]) == int((out.score1.argmax(1) == labels).sum())
    for (name, value), base_value in zip(project.named_parameters(), baseline.parameters()):
        assert_close_scaled(value, base_value, name)


def test_eval_forward_and_class_sums_match_the_project():
    images, labels, _ = fresh_inputs(4, batch=5, size=64)
    project, _ = model_pair(4)
    project.eval()
    scores, maps = bas_eval_forward(project, images, labels)
    with torch.no_grad():
        ref_scores = project(images).score1
        ref_maps = torch.sigmoid(project.class_generator_logits(project.backbone(images), labels))[:, 0]
    torch.testing.assert_close(scores, ref_scores, **LOSS_TOL)
    torch.testing.assert_close(maps, ref_maps, **LOSS_TOL)
    _, resized = localization_maps(project, images, labels, "bas", "gt")
    assert resized.shape == (5, 64, 64)
    sums, counts = torch.zeros(CLASSES, 8, 8), torch.zeros(CLASSES, dtype=torch.int64)
    ref_sums, ref_counts = sums.clone(), counts.clone()
    bas_accumulate_class_sums(sums, counts, maps, labels)
    ops.accumulate_class_sums(ref_sums, ref_counts, ref_maps, labels)
    torch.testing.assert_close(sums, ref_sums, **LOSS_TOL)
    assert torch.equal(counts, ref_counts)
