"""Single-process training loop for the early, late and CAM-baseline runs.

One epoch: a loader (``data.loader``: DALI or the torch DataLoader, built once, set to each
epoch) whose order is a function of (seed, epoch), forward, the stage's loss,
backward, SGD step; losses are summed on the device and read back only every ``log_every``
steps (where a NaN or Inf stops the run before the next checkpoint can be written). After
every epoch a checkpoint with everything needed to resume is written atomically.
"""
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import losses
from ..checkpoint import atomic_save
from ..config import TrainConfig
from ..data import make_loader
from ..mean_maps import MeanMaps
from .optim import build_optimizer, build_scheduler
from .progress import JsonLog, make_progress

CHECKPOINT_NAME = "checkpoint.pt"


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or Inf; the last checkpoint on disk is the last good one."""


def run_name(cfg: TrainConfig) -> str:
    """Sub-folder of ``run.out`` for this run: ``cam``, ``early`` or ``late``."""
    return "cam" if cfg.loss.method == "cam" else cfg.run.stage


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state()[1].tolist(),
             "numpy_pos": int(np.random.get_state()[2]), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    random.setstate((state["python"][0], tuple(state["python"][1]), state["python"][2]))
    np.random.set_state(("MT19937", np.array(state["numpy"], dtype=np.uint32), state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class EpochStats:
    """Sums over an epoch, kept on the device until read back."""

    parts: dict = field(default_factory=dict)
    correct: torch.Tensor | None = None
    images: int = 0
    steps: int = 0

    def add(self, parts: dict, correct: torch.Tensor, batch: int) -> None:
        for name, value in parts.items():
            self.parts[name] = self.parts.get(name, 0.0) + value.detach()
        self.correct = correct if self.correct is None else self.correct + correct
        self.images += batch
        self.steps += 1

    def means(self) -> dict:
        """Mean of each term per step and the top-1 accuracy (%); raises on a non-finite term."""
        values = {name: float(total) / self.steps for name, total in self.parts.items()}
        bad = [name for name, value in values.items() if not math.isfinite(value)]
        if bad:
            raise NonFiniteLossError(f"non-finite loss term(s) {bad} after {self.steps} steps: {values}")
        values["top1"] = 100.0 * float(self.correct) / max(self.images, 1)
        return values


class Trainer:
    """Owns the model, optimizer, schedule and the run folder of one stage."""

    def __init__(self, cfg: TrainConfig, model: torch.nn.Module, train_set, mean_maps: MeanMaps | None = None):
        if cfg.run.stage == "late" and cfg.loss.method == "bas" and mean_maps is None:
            raise ValueError("the late stage needs class-mean maps")
        self.cfg = cfg
        self.device = torch.device(cfg.run.device)
        self.model = model.to(self.device)
        self.train_set = train_set
        data = cfg.data
        self.loader = make_loader(train_set, data.batch_size, loader=data.loader, shuffle=True,
                                  drop_last=len(train_set) >= data.batch_size, workers=data.workers,
                                  device=cfg.run.device, skip_bad_images=data.skip_bad_images)
        self.mean_maps = mean_maps
        self.mean_maps_device = None if mean_maps is None else mean_maps.maps.to(self.device)
        self.optimizer = build_optimizer(model, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim)
        self.epoch = 0  # epochs completed
        self.dir = Path(cfg.run.out) / run_name(cfg)
        self.log = JsonLog(self.dir / "log.jsonl")

    # -- one step -----------------------------------------------------------------------
    def compute_loss(self, images: torch.Tensor, labels: torch.Tensor):
        cfg = self.cfg.loss
        if cfg.method == "cam":
            out = self.model(images, labels, background=False)
            total, parts = losses.classification_loss(out, labels)
        elif self.cfg.run.stage == "late":
            out = self.model(images, labels)
            total, parts = losses.late_loss(out, labels, self.mean_maps_device, cfg.lam,
                                            cfg.alpha, cfg.beta, cfg.bg_rule)
        else:
            out = self.model(images, labels)
            total, parts = losses.early_loss(out, labels, cfg.alpha, cfg.beta, cfg.bg_rule)
        parts = {"loss": total, **parts}
        return total, parts, out

    def train_step(self, images: torch.Tensor, labels: torch.Tensor, stats: EpochStats) -> None:
        total, parts, out = self.compute_loss(images, labels)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        stats.add(parts, (out.score1.argmax(1) == labels).sum(), len(labels))

    # -- one epoch ----------------------------------------------------------------------
    def train_epoch(self, progress=None) -> dict:
        cfg = self.cfg
        self.model.train()
        loader = self.loader
        loader.set_epoch(self.epoch)
        task = None if progress is None else progress.add_task(
            f"{run_name(cfg)} epoch {self.epoch + 1}/{cfg.optim.epochs}", total=len(loader), info="")
        stats, start = EpochStats(), time.perf_counter()
        for step, (images, labels, _) in enumerate(loader, 1):
            self.train_step(images.to(self.device, non_blocking=True),
                            labels.to(self.device, non_blocking=True), stats)
            if step % cfg.run.log_every == 0 or step == len(loader):
                means = stats.means()
                if task is not None:
                    rate = stats.images / (time.perf_counter() - start)
                    info = " ".join(f"{k}={v:.3f}" for k, v in means.items()) + f" {rate:.0f} img/s"
                    progress.update(task, completed=step, info=info)
            elif task is not None:
                progress.update(task, completed=step)
        if stats.steps == 0:
            raise ValueError(f"no training batch: {len(self.train_set)} images, batch size {cfg.data.batch_size}")
        seconds = time.perf_counter() - start
        record = {"run": run_name(cfg), "epoch": self.epoch + 1, "lr": self.optimizer.param_groups[0]["lr"],
                  **stats.means(), "images_per_s": stats.images / seconds, "seconds": seconds,
                  "skipped_images": len(loader.skipped)}
        self.scheduler.step()
        self.epoch += 1
        return record

    def fit(self) -> list[dict]:
        """Train up to ``optim.epochs``, checkpointing after every epoch; returns the epoch records."""
        records = []
        with make_progress() as progress:
            while self.epoch < self.cfg.optim.epochs:
                try:
                    record = self.train_epoch(progress)
                except NonFiniteLossError as error:
                    raise NonFiniteLossError(f"epoch {self.epoch + 1}: {error}; stopped. {self._kept()}") from error
                self.save()
                self.log.write(record)
                records.append(record)
        return records

    # -- checkpoints --------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {"config": self.cfg.to_dict(), "run": run_name(self.cfg), "epoch": self.epoch,
                 "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "rng": rng_state()}
        if self.mean_maps is not None:
            state["mean_maps"] = {"maps": self.mean_maps.maps.cpu(), "counts": self.mean_maps.counts.cpu()}
        return state

    def save(self) -> Path:
        return atomic_save(self.state_dict(), self.dir / CHECKPOINT_NAME)

    def _kept(self) -> str:
        """Which checkpoint survives a failed epoch (for error messages)."""
        path = self.dir / CHECKPOINT_NAME
        if path.exists():
            return f"The last good checkpoint is kept: {path} (after epoch {self.epoch})"
        return "No checkpoint was written"

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = state["epoch"]
        restore_rng_state(state["rng"])
