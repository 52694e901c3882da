"""BAS optimizer: SGD + Nesterov, weight decay on all parameters, learning-rate multipliers
(backbone weights x1, backbone biases x2, new heads' weights x10, biases x20), step decay."""
import torch
from torch import nn

from ..config import OptimConfig

LR_MULTIPLIERS = {("backbone", "weight"): 1.0, ("backbone", "bias"): 2.0,
                  ("head", "weight"): 10.0, ("head", "bias"): 20.0}


def parameter_groups(model: nn.Module, base_lr: float) -> list[dict]:
    """Four groups keyed by (backbone|head, weight|bias), each with its lr multiplier applied.
    Backbone = ``features``; BatchNorm scales count as weights and shifts as biases."""
    groups = {key: [] for key in LR_MULTIPLIERS}
    for name, param in model.named_parameters():
        part = "backbone" if name.startswith("features.") else "head"
        kind = "bias" if name.endswith("bias") else "weight"
        groups[(part, kind)].append(param)
    return [{"params": params, "lr": base_lr * LR_MULTIPLIERS[key], "name": "/".join(key)}
            for key, params in groups.items() if params]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.SGD:
    return torch.optim.SGD(parameter_groups(model, cfg.lr), lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay, nesterov=True)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-epoch step decay: lr x gamma at each milestone epoch (stepped once per epoch)."""
    milestones = sorted(cfg.milestones)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda epoch: cfg.gamma ** sum(epoch >= m for m in milestones))
