"""The fast training step: forward, loss, backward and optimizer step with no host
synchronization, returning device tensors (read them back only at the logging interval).

What makes it fast is mostly in the model (the label's generator channel only, the background
branch on detached weights without copies) and in ``wsol_fast.ops`` (Triton kernels on CUDA);
this module adds the options around it: bf16 autocast, channels_last and ``torch.compile`` of
forward + loss. The three phases are separate methods so a benchmark can time each.
"""
from dataclasses import dataclass

import torch

from .. import losses

STAGES = ("early", "late", "cam")
PRECISIONS = ("fp32", "bf16")


@dataclass
class StepOptions:
    """Loss recipe (``stage``: early, late or cam; METHOD.md §3-4 weights) and speed options."""

    stage: str = "early"
    alpha: float = 1.5
    beta: float = 0.5
    bg_rule: str = "zero-ge"
    lam: float = 1.0
    precision: str = "fp32"  # "bf16": autocast of forward + loss (losses stay float32)
    channels_last: bool = False
    compile: bool = False  # torch.compile of forward + loss

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"StepOptions.stage must be one of {STAGES}, got {self.stage!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"StepOptions.precision must be one of {PRECISIONS}, got {self.precision!r}")


def stage_loss(model, images: torch.Tensor, labels: torch.Tensor, stage: str, alpha: float, beta: float,
               bg_rule: str, lam: float, mean_maps: torch.Tensor | None = None):
    """Forward + the loss of ``stage`` (``cam``: classification only; ``early``: BAS; ``late``:
    BAS + L1 to ``mean_maps`` (C, H/8, W/8)) -> (scalar total, {term: scalar}, model output)."""
    if stage == "cam":
        out = model(images, labels, background=False)
        total, parts = losses.classification_loss(out, labels)
    elif stage == "late":
        out = model(images, labels)
        total, parts = losses.late_loss(out, labels, mean_maps, lam, alpha, beta, bg_rule)
    else:
        out = model(images, labels)
        total, parts = losses.early_loss(out, labels, alpha, beta, bg_rule)
    return total, parts, out


class TrainStep:
    """One training step of ``model`` with ``optimizer`` (``build_optimizer``'s SGD).

    ``step(images, labels)`` -> dict of detached 0-dim device tensors: ``loss``, the loss terms
    and ``correct`` (top-1 hits in the batch, int64). images (B, 3, H, W) float32 on the model's
    device, labels (B,) int64. ``mean_maps`` (C, H/8, W/8) float32 is required for the late stage.
    The model is moved to channels_last here when asked.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 options: StepOptions | None = None, mean_maps: torch.Tensor | None = None):
        self.options = options or StepOptions()
        if self.options.stage == "late" and mean_maps is None:
            raise ValueError("TrainStep: the late stage needs mean_maps (C, H/8, W/8)")
        self.model, self.optimizer, self.mean_maps = model, optimizer, mean_maps
        if self.options.channels_last:
            model.to(memory_format=torch.channels_last)
        eager = self.forward_loss_eager
        self.forward_loss = torch.compile(eager) if self.options.compile else eager

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """The images in the memory format the step runs in."""
        return images.contiguous(memory_format=torch.channels_last) if self.options.channels_last else images

    def forward_loss_eager(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Forward + loss -> (scalar float32 total, {name: scalar} with ``correct``), never
        compiled (``forward_loss`` is this, compiled when ``options.compile``)."""
        o = self.options
        device_type = images.device.type
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=o.precision == "bf16"):
            total, parts, out = stage_loss(self.model, images, labels, o.stage, o.alpha, o.beta, o.bg_rule,
                                           o.lam, self.mean_maps)
        parts["correct"] = (out.score1.argmax(dim=1) == labels).sum()
        return total, parts

    def backward(self, total: torch.Tensor) -> None:
        total.backward()

    def optimizer_step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        total, parts = self.forward_loss(self.prepare(images), labels)
        self.backward(total)
        self.optimizer_step()
        return {"loss": total.detach(), **{name: value.detach() for name, value in parts.items()}}
