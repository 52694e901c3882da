"""Losses on hand-computed cases, the background-ratio rules, and class-mean maps."""
import math

import pytest
import torch

from wsol_fast.checkpoint import atomic_save, load_checkpoint
from wsol_fast.losses import background_ratio, classification_loss, early_loss, late_loss
from wsol_fast.mean_maps import MeanMaps, class_mean_maps
from wsol_fast.models import BASOutput, MobileNetBAS


def make_output():
    score1 = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    score2 = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, math.log(3.0)]])
    score_bg = torch.tensor([1.0, 4.0])
    fg_map = torch.tensor([[0.2, 0.4], [0.6, 0.8]]).view(1, 1, 2, 2).repeat(2, 1, 1, 1)
    fg_map[1] = 0.5
    return BASOutput(score1, score2, score_bg, fg_map, torch.zeros(2, 3, 1, 1), fg_map.mean(dim=(1, 2, 3)))


def test_background_ratio_rules():
    score1 = torch.tensor([[2.0, 0.0], [0.0, 2.0], [4.0, 0.0]])
    score_bg = torch.tensor([1.0, 2.0, 5.0])  # below, equal, above S
    labels = torch.tensor([0, 1, 0])
    expected = {"zero-ge": [0.5, 0.0, 0.0], "zero-gt": [0.5, 1.0, 0.0], "one-ge": [0.5, 1.0, 1.0]}
    for rule, values in expected.items():
        torch.testing.assert_close(background_ratio(score1, score_bg, labels, rule),
                                   torch.tensor(values), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="unknown background rule"):
        background_ratio(score1, score_bg, labels, "sometimes")


def test_early_loss_hand_computed():
    out, labels = make_output(), torch.tensor([0, 1])
    cls = (-math.log(math.exp(2) / (math.exp(2) + math.exp(1) + 1))
           - math.log(math.exp(3) / (1 + math.exp(3) + math.exp(1)))) / 2
    fg = (math.log(3.0) + math.log(5.0)) / 2  # second: exp(0)/(1+1+3)
    bg = (0.5 + 0.0) / 2  # 1/2, and 4 >= 3 -> 0
    area = (0.5 + 0.5) / 2
    total, parts = early_loss(out, labels, alpha=1.5, beta=0.5)
    for name, value in {"cls": cls, "fg": fg, "bg": bg, "area": area}.items():
        assert parts[name].item() == pytest.approx(value, rel=1e-6), name
    assert total.item() == pytest.approx(cls + 0.5 * fg + bg + 1.5 * area, rel=1e-6)
    cam_total, cam_parts = classification_loss(out, labels)
    assert cam_total.item() == pytest.approx(cls, rel=1e-6) and set(cam_parts) == {"cls"}


def test_late_loss_adds_l1_to_the_class_mean_map():
    out, labels = make_output(), torch.tensor([0, 1])
    mean_maps = torch.stack([torch.full((2, 2), 0.3), torch.tensor([[0.0, 1.0], [0.5, 0.5]]), torch.zeros(2, 2)])
    l1 = ((0.1 + 0.1 + 0.3 + 0.5) / 4 + (0.5 + 0.5 + 0.0 + 0.0) / 4) / 2
    early_total, _ = early_loss(out, labels)
    total, parts = late_loss(out, labels, mean_maps, lam=2.0)
    assert parts["avg"].item() == pytest.approx(l1, rel=1e-6)
    assert total.item() == pytest.approx(early_total.item() + 2.0 * l1, rel=1e-6)


def test_loss_gradient_reaches_the_foreground_map():
    out, labels = make_output(), torch.tensor([0, 1])
    out.fg_map.requires_grad_(True)
    total, _ = late_loss(out, labels, torch.rand(3, 2, 2))
    total.backward()
    assert out.fg_map.grad.abs().sum() > 0


def test_class_mean_maps_equal_brute_force():
    torch.manual_seed(1)
    model = MobileNetBAS(4, 0.25)
    images = torch.randn(7, 3, 32, 32)
    labels = torch.tensor([0, 2, 2, 0, 2, 3, 0])  # class 1 has no image
    loader = [(images[:3], labels[:3]), (images[3:], labels[3:])]
    model.train()
    maps, counts = class_mean_maps(model, loader, num_classes=4)
    assert model.training, "the model's mode is restored"
    model.eval()
    with torch.no_grad():
        all_maps = model.generator_maps(model.backbone(images))
    for c in range(4):
        chosen = [all_maps[i, c] for i in range(7) if labels[i] == c]
        expected = torch.stack(chosen).mean(0) if chosen else torch.zeros(4, 4)
        torch.testing.assert_close(maps[c], expected, rtol=1e-5, atol=1e-6)
    assert counts.tolist() == [3, 0, 3, 1]
    assert MeanMaps(maps, counts).empty_classes == [1]


def test_mean_maps_round_trip_through_a_checkpoint(tmp_path):
    saved = MeanMaps(torch.rand(3, 4, 4), torch.tensor([2, 0, 5]))
    atomic_save({"mean_maps": saved.to_state()}, tmp_path / "checkpoint.pt")
    loaded = MeanMaps.from_state(load_checkpoint(tmp_path / "checkpoint.pt")["mean_maps"])
    assert torch.equal(loaded.maps, saved.maps) and torch.equal(loaded.counts, saved.counts)
    assert loaded.empty_classes == [1]
