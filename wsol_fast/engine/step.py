"""The training step: forward, loss, backward and optimizer step with no host synchronization,
returning device tensors (read them back only at the logging interval).

``launch/train.py`` (through ``Trainer``) and the benchmarks run this one step. It drives an
*engine*: anything called for the forward pass with ``backward(loss)`` and ``step()``, i.e. a
DeepSpeed engine in training, or ``PlainEngine`` (a module and a torch optimizer) in benchmarks
and tests. What makes it fast is mostly in the model (the label's generator channel only, the
background branch on detached weights without copies) and in ``wsol_fast.ops`` (Triton kernels on
CUDA); this module adds the options around it: bf16 autocast, channels_last and ``torch.compile``
of forward + loss. The three phases are separate methods so a benchmark can time each.
"""
from dataclasses import dataclass, field

import torch

from .. import losses
from ..config import PRECISIONS, LossConfig

STAGES = ("early", "late", "cam")


@dataclass
class StepOptions:
    """Loss recipe (``stage``: early, late or cam; ``loss``: METHOD.md §3-4 weights) and speed
    options (``precision``: ``bf16`` autocasts forward + loss, losses stay float32)."""

    stage: str = "early"
    loss: LossConfig = field(default_factory=LossConfig)
    precision: str = "fp32"
    channels_last: bool = False
    compile: str | None = None  # torch.compile backend of forward + loss ("inductor"; None: eager)

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"StepOptions.stage must be one of {STAGES}, got {self.stage!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"StepOptions.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.compile is not None:
            backends = torch._dynamo.list_backends(exclude_tags=())
            if self.compile not in backends:
                raise ValueError(f"--compile {self.compile!r}: torch.compile knows the backends {', '.join(backends)}")


def stage_loss(model, images: torch.Tensor, labels: torch.Tensor, stage: str, loss: LossConfig,
               mean_maps: torch.Tensor | None = None):
    """Forward + the loss of ``stage`` (``cam``: classification only; ``early``: BAS; ``late``:
    BAS + L1 to ``mean_maps`` (C, H/8, W/8)) -> (scalar total, {term: scalar}, model output)."""
    if stage == "cam":
        out = model(images, labels, background=False)
        total, parts = losses.classification_loss(out, labels)
    elif stage == "late":
        out = model(images, labels)
        total, parts = losses.late_loss(out, labels, mean_maps, loss.lam, loss.alpha, loss.beta, loss.bg_rule)
    else:
        out = model(images, labels)
        total, parts = losses.early_loss(out, labels, loss.alpha, loss.beta, loss.bg_rule)
    return total, parts, out


class PlainEngine:
    """The part of DeepSpeed's engine that ``TrainStep`` drives, for a module and a torch
    optimizer: called for the forward pass, ``backward(loss)``, ``step()`` (optimizer step,
    gradients cleared), ``zero_optimization()`` (False: the parameters are the module's own)."""

    def __init__(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer):
        self.module, self.optimizer = module, optimizer

    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def zero_optimization(self) -> bool:
        return False


class TrainStep:
    """One training step through ``engine`` (a DeepSpeed engine or ``PlainEngine``).

    ``step(images, labels)`` -> dict of detached 0-dim device tensors: ``loss``, the loss terms
    and ``correct`` (top-1 hits in the batch, int64). images (B, 3, H, W) float32 on the model's
    device, labels (B,) int64. ``mean_maps`` (C, H/8, W/8) float32 is required for the late stage.
    With ``channels_last`` the engine's module is converted here (its parameters stay the same
    objects, so the optimizer is unaffected), unless ZeRO holds the parameters as views of flat
    buffers: then only the batches are channels_last, which is enough for the convolutions to run
    channels_last (PyTorch picks the format from the input or the weight).
    """

    def __init__(self, engine, options: StepOptions | None = None, mean_maps: torch.Tensor | None = None):
        self.options = options or StepOptions()
        if self.options.stage == "late" and mean_maps is None:
            raise ValueError("TrainStep: the late stage needs mean_maps (C, H/8, W/8)")
        self.engine, self.mean_maps = engine, mean_maps
        if self.options.channels_last and not engine.zero_optimization():
            engine.module.to(memory_format=torch.channels_last)
        eager = self.forward_loss_eager
        self.forward_loss = torch.compile(eager, backend=self.options.compile) if self.options.compile else eager

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """The images in the memory format the step runs in."""
        return images.contiguous(memory_format=torch.channels_last) if self.options.channels_last else images

    def forward_loss_eager(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Forward + loss -> (scalar float32 total, {name: scalar} with ``correct``), never
        compiled (``forward_loss`` is this, compiled when ``options.compile``)."""
        o = self.options
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=o.precision == "bf16"):
            total, parts, out = stage_loss(self.engine, images, labels, o.stage, o.loss, self.mean_maps)
        parts["correct"] = (out.score1.argmax(dim=1) == labels).sum()
        return total, parts

    def backward(self, total: torch.Tensor) -> None:
        self.engine.backward(total)

    def optimizer_step(self) -> None:
        self.engine.step()

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        total, parts = self.forward_loss(self.prepare(images), labels)
        self.backward(total)
        self.optimizer_step()
        return {"loss": total.detach(), **{name: value.detach() for name, value in parts.items()}}

    def stages(self, images: torch.Tensor, labels: torch.Tensor, eager: bool = False):
        """``step`` as a generator for benchmarks: yields "forward", "backward", "optimizer" as each
        phase's work is issued and returns ``step``'s results; ``eager`` skips ``torch.compile``."""
        forward_loss = self.forward_loss_eager if eager else self.forward_loss
        total, parts = forward_loss(self.prepare(images), labels)
        yield "forward"
        self.backward(total)
        yield "backward"
        self.optimizer_step()
        yield "optimizer"
        return {"loss": total.detach(), **{name: value.detach() for name, value in parts.items()}}
