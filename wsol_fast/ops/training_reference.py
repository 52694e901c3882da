"""Reference (plain PyTorch) definitions of the small ops between the convolutions of a BAS
training step. The Triton kernels in ``wsol_fast.kernels`` are tested against these; both check
their inputs with ``training_checks``."""
import torch
import torch.nn.functional as F

from . import training_checks as checks


def foreground_epilogue(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Generator logits of one class per sample, (B, 1, H, W) with even H, W ->
    ``fg`` (B, 1, H, W) sigmoid map in (0, 1), ``area`` (B,) its per-sample mean, and
    ``pooled`` (B, 1, H/2, W/2) its 2x2 average pool (multiplies the class maps in score2)."""
    checks.check_foreground_epilogue(logits)
    fg = torch.sigmoid(logits)
    return fg, fg.mean(dim=(1, 2, 3)), F.avg_pool2d(fg, 2)


def background_product(x4: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
    """Background input of the BAS background branch: ``detach(x4) * (1 - fg)``.
    x4 (B, K, H, W), fg (B, 1, H, W) -> (B, K, H, W) in x4's dtype; gradient reaches fg only."""
    checks.check_background_product(x4, fg)
    return x4.detach() * (1 - fg).to(x4.dtype)


def guided_score(class_maps: torch.Tensor, pooled_fg: torch.Tensor) -> torch.Tensor:
    """Foreground-guided score: class maps (B, C, h, w) times pooled fg (B, 1, h, w), spatial
    mean -> (B, C) float32."""
    checks.check_guided_score(class_maps, pooled_fg)
    return (class_maps.float() * pooled_fg.float()).mean(dim=(2, 3))


def accumulate_class_sums(sums: torch.Tensor, counts: torch.Tensor, maps: torch.Tensor,
                          labels: torch.Tensor) -> None:
    """In place: ``sums[labels[i]] += maps[i]`` and ``counts[labels[i]] += 1``.
    sums (C, H, W) float32, counts (C,) int32/int64/float32/float64, maps (B, H, W), labels (B,)
    int32/int64 in [0, C)."""
    labels = checks.check_class_sums(sums, counts, maps, labels)
    sums.index_add_(0, labels, maps.to(sums.dtype))
    counts.index_add_(0, labels, torch.ones_like(labels, dtype=counts.dtype))


def mean_map_l1(fg: torch.Tensor, mean_maps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Late-stage pull toward the class-mean map: ``mean_b mean_pixels |fg_b - M[y_b]|``.
    fg (B, 1, H, W), mean_maps (C, H, W) fixed, labels (B,) -> scalar float32."""
    labels = checks.check_mean_map_l1(fg, mean_maps, labels)
    target = mean_maps[labels].unsqueeze(1)
    return (fg.float() - target.float()).abs().mean()
