"""BAS losses (METHOD.md §3) and the late-stage class-mean-map term (§4); the weights default
to ``LossConfig``'s.

Every function returns ``(total, parts)``: a scalar to backpropagate and a dict of the named
(undetached, scalar) terms for logging.
"""
import torch
import torch.nn.functional as F

from . import ops
from .config import BACKGROUND_RULES, LossConfig
from .models import BASOutput


def background_ratio(score1: torch.Tensor, score_bg: torch.Tensor, labels: torch.Tensor,
                     rule: str = LossConfig.bg_rule) -> torch.Tensor:
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


def early_loss(out: BASOutput, labels: torch.Tensor, alpha: float = LossConfig.alpha,
               beta: float = LossConfig.beta, bg_rule: str = LossConfig.bg_rule) -> tuple[torch.Tensor, dict]:
    """L_early = L_cls + beta * L_fg + L_bg + alpha * L_area."""
    parts = {
        "cls": F.cross_entropy(out.score1.float(), labels),
        "fg": F.cross_entropy(out.score2.float(), labels),
        "bg": background_ratio(out.score1, out.score_bg, labels, bg_rule).mean(),
        "area": out.fg_area.float().mean(),
    }
    total = parts["cls"] + beta * parts["fg"] + parts["bg"] + alpha * parts["area"]
    return total, parts


def late_loss(out: BASOutput, labels: torch.Tensor, mean_maps: torch.Tensor, lam: float = LossConfig.lam,
              alpha: float = LossConfig.alpha, beta: float = LossConfig.beta,
              bg_rule: str = LossConfig.bg_rule) -> tuple[torch.Tensor, dict]:
    """L_late = L_early + lam * mean_b mean_pixels |fg_b - M_avg[y_b]|; mean_maps (C, h, w) fixed."""
    total, parts = early_loss(out, labels, alpha, beta, bg_rule)
    parts["avg"] = ops.mean_map_l1(out.fg_map, mean_maps, labels)
    return total + lam * parts["avg"], parts
