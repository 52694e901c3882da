"""MobileNetBAS: shapes, parameter count, gradient routing of the background branch, BN
statistics, the label-gathered generator, and pretrained-weight loading."""
import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from wsol_fast.models import MobileNetBAS, PretrainedMismatchError, load_pretrained_backbone

torch.manual_seed(0)


def small_model(num_classes=5, width=0.25):
    model = MobileNetBAS(num_classes, width)
    model.train()
    return model


@pytest.mark.parametrize("size", [224, 64])
def test_output_shapes(size):
    model = small_model()
    images, labels = torch.randn(2, 3, size, size), torch.tensor([1, 4])
    out = model(images, labels)
    assert out.score1.shape == out.score2.shape == (2, 5)
    assert out.score_bg.shape == (2,)
    assert out.fg_map.shape == (2, 1, size // 8, size // 8)
    assert out.class_maps.shape == (2, 5, size // 16, size // 16)
    assert (out.score1 >= 0).all(), "the classifier ends in ReLU"
    assert ((out.fg_map > 0) & (out.fg_map < 1)).all()


def test_input_size_must_be_multiple_of_16():
    with pytest.raises(ValueError, match="multiple of 16"):
        small_model()(torch.randn(1, 3, 100, 100))


def test_parameter_count_full_width_200_classes():
    model = MobileNetBAS(200, 1.0)
    backbone = 3_206_976  # MobileNetV1 without its fc layer
    cls_head = 2 * (1024 * 1024 * 9 + 1024) + (1024 * 200 + 200)
    loc_head = 512 * 9 * 200 + 200
    assert sum(p.numel() for p in model.parameters()) == backbone + cls_head + loc_head
    assert [m.stride for m in model.features[6] if isinstance(m, torch.nn.Conv2d)][0] == (1, 1)


def test_label_gathered_generator_equals_full_generator():
    model = small_model(num_classes=7)
    x4 = torch.randn(3, model.loc_head.in_channels, 9, 11)
    labels = torch.tensor([6, 0, 6])
    full = model.loc_head(x4)[torch.arange(3), labels].unsqueeze(1)
    torch.testing.assert_close(model.class_generator_logits(x4, labels), full, rtol=1e-5, atol=1e-5)
    out = model(torch.randn(3, 3, 64, 64), labels)
    torch.testing.assert_close(out.fg_map.shape, (3, 1, 8, 8))


def test_forward_matches_the_definition():
    """score2 = mean(F * avgpool2(fg)); fg = sigmoid(generator)[label]; score_bg from a deep copy."""
    model = small_model()
    images, labels = torch.randn(3, 3, 64, 64), torch.tensor([0, 2, 4])
    reference = copy.deepcopy(model)
    out = model(images, labels)
    x4 = reference.backbone(images)
    class_maps = reference.classifier(x4)
    fg = reference.generator_maps(x4)[torch.arange(3), labels].unsqueeze(1)
    torch.testing.assert_close(out.fg_map, fg, rtol=1e-5, atol=1e-6)
    score2 = (class_maps * F.avg_pool2d(fg, 2)).mean(dim=(2, 3))
    torch.testing.assert_close(out.score2, score2, rtol=1e-5, atol=1e-6)
    tail = copy.deepcopy(torch.nn.Sequential(*reference.features[12:], reference.cls_head))
    bg_scores = tail(x4.detach() * (1 - fg)).mean(dim=(2, 3))[torch.arange(3), labels]
    torch.testing.assert_close(out.score_bg, bg_scores, rtol=1e-5, atol=1e-6)


def test_background_loss_reaches_generator_and_backbone_only():
    model = small_model()
    out = model(torch.randn(2, 3, 64, 64), torch.tensor([1, 3]))
    out.score_bg.sum().backward()
    assert model.loc_head.weight.grad.abs().sum() > 0
    assert model.features[0][0].weight.grad.abs().sum() > 0
    for name, param in model.named_parameters():
        if name.startswith(("features.12.", "features.13.", "cls_head.")):
            assert param.grad is None, f"background branch leaked a gradient into {name}"


def test_background_branch_leaves_running_statistics_alone():
    model = small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.background_class_maps(torch.randn(2, model.loc_head.in_channels, 8, 8))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    # A full step updates the statistics exactly as the same step without the background branch.
    images, labels = torch.randn(2, 3, 64, 64), torch.tensor([0, 1])
    twin = copy.deepcopy(model)
    model(images, labels, background=True)
    twin(images, labels, background=False)
    for (key, value), twin_value in zip(model.state_dict().items(), twin.state_dict().values()):
        torch.testing.assert_close(value, twin_value, msg=key)


def _standard_mobilenet_state(features):
    """A pytorch-ssd style base-net state dict (Sequential indices) plus an fc layer."""
    state = {k: torch.randn_like(v.float()).to(v.dtype) if v.is_floating_point() else v
             for k, v in features.state_dict().items()}
    state["fc.weight"], state["fc.bias"] = torch.randn(1001, 1024), torch.randn(1001)
    return state


def _timm_state(ssd_state):
    """The same weights under timm mobilenetv1_100 names."""
    names = {0: "conv_dw", 1: "bn1", 3: "conv_pw", 4: "bn2"}
    stage_of_block = [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1)] + [(3, r) for r in range(6)] + [(4, 0), (4, 1)]
    timm = {"classifier.weight": ssd_state["fc.weight"], "classifier.bias": ssd_state["fc.bias"]}
    for key, value in ssd_state.items():
        if key.startswith("fc."):
            continue
        block, layer, rest = key.split(".", 2)
        if block == "0":
            timm[("conv_stem." if layer == "0" else "bn1.") + rest] = value
        else:
            stage, repeat = stage_of_block[int(block) - 1]
            timm[f"blocks.{stage}.{repeat}.{names[int(layer)]}.{rest}"] = value
    return timm


@pytest.mark.parametrize("kind", ["pytorch-ssd", "timm"])
def test_pretrained_loading(tmp_path, kind):
    model = MobileNetBAS(3, 1.0)
    state = _standard_mobilenet_state(model.features)
    path = tmp_path / "weights.pth"
    torch.save({f"model.{k}": v for k, v in state.items()} if kind == "pytorch-ssd" else _timm_state(state), path)
    assert load_pretrained_backbone(model.features, path) == kind
    for key, value in model.features.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_pretrained_mismatch_is_reported(tmp_path):
    state = _standard_mobilenet_state(MobileNetBAS(3, 1.0).features)
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    with pytest.raises(PretrainedMismatchError, match=r"0\.0\.weight has shape \(32, 3, 3, 3\).*width_mult"):
        load_pretrained_backbone(MobileNetBAS(3, 0.5).features, path)
    state["1.0.weight"] = torch.randn(32, 1, 5, 5)
    torch.save(state, path)
    with pytest.raises(PretrainedMismatchError, match=r"1\.0\.weight has shape \(32, 1, 5, 5\)"):
        load_pretrained_backbone(MobileNetBAS(3, 1.0).features, path)
    timm = _timm_state(_standard_mobilenet_state(MobileNetBAS(3, 1.0).features))
    del timm["blocks.3.2.conv_pw.weight"]
    torch.save(timm, path)
    with pytest.raises(PretrainedMismatchError, match="missing"):
        load_pretrained_backbone(MobileNetBAS(3, 1.0).features, path)
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        load_pretrained_backbone(MobileNetBAS(3, 1.0).features, tmp_path / "nothing.pth")


def test_triton_path_matches_reference_end_to_end(monkeypatch):
    """The whole model and its late loss through the Triton kernels (interpreted on the CPU)
    equal the reference: forward losses and every parameter gradient."""
    from wsol_fast.losses import late_loss

    model = small_model(num_classes=5)
    images, labels = torch.randn(3, 3, 64, 64), torch.tensor([4, 0, 4])
    mean_maps = torch.rand(5, 8, 8)
    results = {}
    for backend in ("reference", "triton"):
        monkeypatch.setenv("WSOL_FAST_OPS", backend)
        twin = copy.deepcopy(model)
        total, parts = late_loss(twin(images, labels), labels, mean_maps)
        total.backward()
        results[backend] = (parts, {n: p.grad for n, p in twin.named_parameters() if p.grad is not None})
    (ref_parts, ref_grads), (tri_parts, tri_grads) = results["reference"], results["triton"]
    for name in ref_parts:
        torch.testing.assert_close(tri_parts[name], ref_parts[name], rtol=1e-5, atol=1e-6, msg=name)
    assert ref_grads.keys() == tri_grads.keys()
    for name in ref_grads:
        torch.testing.assert_close(tri_grads[name], ref_grads[name], rtol=1e-4, atol=1e-5, msg=name)


def test_pretrained_file_that_would_run_code_is_refused_by_name(tmp_path):
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"features.0.0.weight": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match=f"refused to load checkpoint {tmp_path / 'evil.pth'}"):
        load_pretrained_backbone(MobileNetBAS(3).features, tmp_path / "evil.pth")
    assert not marker.exists()
