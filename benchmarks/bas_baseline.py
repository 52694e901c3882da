"""BAS-STYLE BASELINE (for benchmarks only; not used by training).

The straightforward computation of METHOD.md §2-4 the way the public BAS code does it, on the
weights of a ``MobileNetBAS``, so the benchmark can show what the project's engineering buys:

* the generator computes **all C** class maps and the label's map is picked per sample;
* the background branch runs on **deep copies** (``copy.deepcopy``) of the tail and the
  classifier made at every forward: their weights keep ``requires_grad``, so backward also
  computes (and throws away) their weight gradients;
* scores, maps and the background ratio are gathered in **per-sample Python loops** (the
  ``S_bg >= S`` rule is a Python ``if``, one host read-back per sample).

Values equal the project's model and losses (``tests/test_bas_baseline.py``); only the cost differs.
"""
import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from wsol_fast.models.mobilenet_bas import TAIL_START, MobileNetBAS


@dataclass
class BaselineOutput:
    """score1, score2 (B, C); score_bg (B,) at the label; fg_map (B, 1, H/8, W/8); all_maps
    (B, C, H/8, W/8): every class's generator map."""

    score1: torch.Tensor
    score2: torch.Tensor
    score_bg: torch.Tensor
    fg_map: torch.Tensor
    all_maps: torch.Tensor


def bas_forward(model: MobileNetBAS, images: torch.Tensor, labels: torch.Tensor) -> BaselineOutput:
    """BAS-style training forward of ``model``'s weights. images (B, 3, H, W), labels (B,) int64."""
    x4 = model.features[:TAIL_START](images)
    class_maps = model.cls_head(model.features[TAIL_START:](x4))
    score1 = class_maps.mean(dim=(2, 3))
    all_maps = torch.sigmoid(model.loc_head(x4))
    fg_map = torch.stack([all_maps[i, labels[i]] for i in range(len(labels))]).unsqueeze(1)
    score2 = (class_maps * F.avg_pool2d(fg_map, 2)).mean(dim=(2, 3))
    tail_copy = copy.deepcopy(model.features[TAIL_START:])
    cls_copy = copy.deepcopy(model.cls_head)
    bg_scores = cls_copy(tail_copy(x4.detach() * (1 - fg_map))).mean(dim=(2, 3))
    score_bg = torch.stack([bg_scores[i, labels[i]] for i in range(len(labels))])
    return BaselineOutput(score1, score2, score_bg, fg_map, all_maps)


def bas_early_loss(out: BaselineOutput, labels: torch.Tensor, alpha: float = 1.5,
                   beta: float = 0.5) -> tuple[torch.Tensor, dict]:
    """L_cls + beta L_fg + L_bg + alpha L_area with the CUB rule (r := 0 where S_bg >= S),
    the ratio taken sample by sample."""
    ratios = []
    for i in range(len(labels)):
        s = out.score1[i, labels[i]].detach()
        s_bg = out.score_bg[i]
        ratios.append(s_bg * 0 if s_bg >= s else s_bg / (s + 1e-8))
    parts = {"cls": F.cross_entropy(out.score1, labels), "fg": F.cross_entropy(out.score2, labels),
             "bg": torch.stack(ratios).mean(), "area": out.fg_map.mean()}
    return parts["cls"] + beta * parts["fg"] + parts["bg"] + alpha * parts["area"], parts


def bas_late_loss(out: BaselineOutput, labels: torch.Tensor, mean_maps: torch.Tensor, lam: float = 1.0,
                  alpha: float = 1.5, beta: float = 0.5) -> tuple[torch.Tensor, dict]:
    """Early loss + lam * mean_b mean_pixels |fg_b - M_avg[y_b]|, one sample at a time.
    mean_maps (C, H/8, W/8) float32."""
    total, parts = bas_early_loss(out, labels, alpha, beta)
    terms = [(out.fg_map[i, 0] - mean_maps[labels[i]]).abs().mean() for i in range(len(labels))]
    parts["avg"] = torch.stack(terms).mean()
    return total + lam * parts["avg"], parts


@torch.no_grad()
def bas_eval_forward(model: MobileNetBAS, images: torch.Tensor,
                     labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluation / mean-map forward, BAS style: class scores (B, C) and all C generator maps,
    the label's map picked per sample, (B, H/8, W/8) in (0, 1)."""
    x4 = model.features[:TAIL_START](images)
    score1 = model.cls_head(model.features[TAIL_START:](x4)).mean(dim=(2, 3))
    all_maps = torch.sigmoid(model.loc_head(x4))
    return score1, torch.stack([all_maps[i, labels[i]] for i in range(len(labels))])


@torch.no_grad()
def bas_accumulate_class_sums(sums: torch.Tensor, counts: torch.Tensor, maps: torch.Tensor,
                              labels: torch.Tensor) -> None:
    """In place, one sample at a time: ``sums[y_i] += maps[i]``, ``counts[y_i] += 1``."""
    for i in range(len(labels)):
        sums[labels[i]] += maps[i]
        counts[labels[i]] += 1
