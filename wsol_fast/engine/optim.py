"""BAS optimizer: SGD + Nesterov, weight decay on all parameters, learning-rate multipliers
(backbone weights x1, backbone biases x2, new heads' weights x10, biases x20), step decay.
Both go to ``deepspeed.initialize`` as its client optimizer and client lr scheduler."""
import torch
from torch import nn

from ..config import LR_MULTIPLIERS, OptimConfig


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


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Step decay by epoch, stepped once per optimizer step (as DeepSpeed steps a client
    scheduler): lr x gamma from the first step of each milestone epoch on."""
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
    boundaries = [m * steps_per_epoch for m in sorted(cfg.milestones)]
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: cfg.gamma ** sum(step >= b for b in boundaries))
