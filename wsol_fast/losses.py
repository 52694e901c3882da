"""BAS losses (METHOD.md §3) and the late-stage class-mean-map term (§4).

Every function returns ``(total, parts)``: a scalar to backpropagate and a dict of the named
(undetached, scalar) terms for logging.
"""
import torch
import torch.nn.functional as F

from . import ops
from .models import BASOutput

# How the background ratio r = S_bg / S is treated where the background scores at least as
# high as the image: the CVPR code's CUB rule (>= -> 0), its ImageNet rule (> -> 0), and the
# journal version (>= -> 1).
BACKGROUND_RULES = ("zero-ge", "zero-gt", "one-ge")

# Loss weights (alpha: area, beta: foreground-guided CE) for MobileNetV1 per dataset.
DATASET_LOSS_WEIGHTS = {
    "cub": {"alpha": 1.5, "beta": 0.5},
    "imagenet": {"alpha": 1.5, "beta": 0.5},
    "synthetic": {"alpha": 1.5, "beta": 0.5},
}


def background_ratio(score1: torch.Tensor, score_bg: torch.Tensor, labels: torch.Tensor,
                     rule: str = "zero-ge") -> torch.Tensor:
    """Per-sample r = S_bg / (S + 1e-8), S = score1 at the label (detached). (B,) float32."""
    if rule not in BACKGROUND_RULES:
        raise ValueError(f"unknown background rule {rule!r}; choose from {BACKGROUND_RULES}")
    s = score1.detach().float().gather(1, labels[:, None]).squeeze(1)
    s_bg = score_bg.float()
    ratio = s_bg / (s + 1e-8)
    over = s_bg >= s if rule in ("zero-ge", "one-ge") else s_bg > s
    return torch.where(over, torch.full_like(ratio, 1.0 if rule == "one-ge" else 0.0), ratio)


def classification_loss(out: BASOutput, labels: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """CAM baseline: L_cls only."""
    cls = F.cross_entropy(out.score1.float(), labels)
    return cls, {"cls": cls}


def early_loss(out: BASOutput, labels: torch.Tensor, alpha: float = 1.5, beta: float = 0.5,
               bg_rule: str = "zero-ge") -> tuple[torch.Tensor, dict]:
    """L_early = L_cls + beta * L_fg + L_bg + alpha * L_area."""
    parts = {
        "cls": F.cross_entropy(out.score1.float(), labels),
        "fg": F.cross_entropy(out.score2.float(), labels),
        "bg": background_ratio(out.score1, out.score_bg, labels, bg_rule).mean(),
        "area": out.fg_area.float().mean(),
    }
    total = parts["cls"] + beta * parts["fg"] + parts["bg"] + alpha * parts["area"]
    return total, parts


def late_loss(out: BASOutput, labels: torch.Tensor, mean_maps: torch.Tensor, lam: float = 1.0,
              alpha: float = 1.5, beta: float = 0.5, bg_rule: str = "zero-ge") -> tuple[torch.Tensor, dict]:
    """L_late = L_early + lam * mean_b mean_pixels |fg_b - M_avg[y_b]|; mean_maps (C, h, w) fixed."""
    total, parts = early_loss(out, labels, alpha, beta, bg_rule)
    parts["avg"] = ops.mean_map_l1(out.fg_map, mean_maps, labels)
    return total + lam * parts["avg"], parts
