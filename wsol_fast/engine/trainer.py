"""Training loop of the early, late and CAM-baseline runs, driven by a DeepSpeed engine.

Every run, one process or many, goes through ``deepspeed.initialize`` with the BAS SGD groups
(client optimizer) and the step-decay schedule (client lr scheduler); the engine reduces
gradients across ranks, accumulates micro-batches and steps both. One epoch: a loader
(``data.loader``: DALI or the torch DataLoader, this rank's shard, set to each epoch) whose order
is a function of (seed, epoch), then ``step.TrainStep`` (the step the benchmarks time: forward and
the stage's loss under bf16 autocast with ``run.precision``, backward, engine step; channels_last
and ``torch.compile`` as configured); losses are summed on
the device and read back (summed over ranks) only every ``log_every`` steps and before each
checkpoint (where a NaN or Inf stops the run before it can be written).

Checkpoints, after every epoch and every ``checkpoint_every`` optimizer steps, follow
``run_checkpoint.CheckpointProtocol``. ``WSOL_FAST_FAULT_AFTER_STEP=K`` ends the process (``os._exit``) right after
optimizer step K (and its checkpoint, if one is due), to test resuming after a fault.
"""
import contextlib
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import collectives
from ..config import TrainConfig
from ..data import make_loader
from ..mean_maps import MeanMaps
from ..models.layers import convert_sync_batchnorm
from . import distributed
from .deepspeed_files import load_weights_only
from .optim import build_optimizer, build_scheduler
from .progress import JsonLog, make_progress
from .run_checkpoint import CheckpointProtocol, NonFiniteLossError
from .step import StepOptions, TrainStep

FAULT_ENV = "WSOL_FAST_FAULT_AFTER_STEP"
FAULT_EXIT_CODE = 17


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class EpochStats:
    """Sums over (the rest of) an epoch, kept on the device until read back summed over ranks."""

    parts: dict = field(default_factory=dict)
    correct: torch.Tensor | float = 0.0
    images: int = 0
    steps: int = 0  # micro-batch steps, summed over ranks once read back

    def add(self, results: dict, batch: int) -> None:
        """Add one micro-batch's ``TrainStep.step`` results (loss terms and ``correct``)."""
        for name, value in results.items():
            if name != "correct":
                self.parts[name] = self.parts.get(name, 0.0) + value.detach().float()
        self.correct = self.correct + results["correct"]
        self.images += batch
        self.steps += 1

    def totals(self) -> dict:
        """``{term: sum, "correct", "images", "steps"}`` summed over all ranks (a collective)."""
        names = list(self.parts)  # insertion order: the same on every rank
        device = distributed.device()
        sums = [torch.as_tensor(value, dtype=torch.float64, device=device).reshape(())
                for value in [*(self.parts[n] for n in names), self.correct, self.images, self.steps]]
        values = collectives.all_reduce_sum_(torch.stack(sums)).cpu().tolist()  # one copy to the host
        return {**dict(zip(names, values)), "correct": values[-3], "images": int(values[-2]),
                "steps": int(values[-1])}

    def load_totals(self, totals: dict) -> None:
        """Start from ``totals`` (read back before a checkpoint); give them to one rank only."""
        self.parts = {n: v for n, v in totals.items() if n not in ("correct", "images", "steps")}
        self.correct, self.images, self.steps = totals["correct"], totals["images"], totals["steps"]

    def means(self, totals: dict | None = None) -> dict:
        """Mean of each term per step and the top-1 accuracy (%) over all ranks; raises on a
        non-finite term. A collective unless ``totals`` are given."""
        totals = self.totals() if totals is None else totals
        steps = max(totals["steps"], 1)
        values = {n: v / steps for n, v in totals.items() if n not in ("correct", "images", "steps")}
        bad = [name for name, value in values.items() if not math.isfinite(value)]
        if bad:
            raise NonFiniteLossError(f"non-finite loss term(s) {bad} after {totals['steps']} steps: {values}")
        values["top1"] = 100.0 * totals["correct"] / max(totals["images"], 1)
        return values


def step_options(cfg: TrainConfig) -> StepOptions:
    """The training step ``cfg`` describes: its stage's loss and the speed options."""
    return StepOptions(stage=cfg.run_name, loss=cfg.loss, precision=cfg.run.precision,
                       channels_last=cfg.run.channels_last, compile=cfg.run.compile)


class Trainer(CheckpointProtocol):
    """Owns the DeepSpeed engine (model, optimizer, schedule), this rank's loader and the run
    folder of one stage. ``model`` is the module being trained (``engine.module``)."""

    def __init__(self, cfg: TrainConfig, model: torch.nn.Module, train_set, mean_maps: MeanMaps | None = None):
        if cfg.run.stage == "late" and cfg.loss.method == "bas" and mean_maps is None:
            raise ValueError("the late stage needs class-mean maps")
        distributed.init_process_group()
        deepspeed = distributed.deepspeed_module()
        self.cfg = cfg
        self.device = distributed.device()
        self.world = collectives.world_size()
        self.train_set = train_set
        data, accum = cfg.data, cfg.optim.grad_accum
        source = cfg.run.deepspeed_config or "the default DeepSpeed config"
        ds_config = distributed.with_batch_sizes(distributed.load_ds_config(cfg.run.deepspeed_config),
                                                 data.batch_size, accum, self.world, source)
        ds_config, cfg.run.precision = distributed.with_precision(ds_config, cfg.run.precision, source)
        options = step_options(cfg)  # checked here, before the loader and the engine are built
        self.micro_batch = ds_config["train_micro_batch_size_per_gpu"]
        self.loader = make_loader(train_set, self.micro_batch, loader=data.loader, shuffle=True,
                                  drop_last=len(train_set) >= data.batch_size, workers=data.workers,
                                  device=str(self.device), shard_id=collectives.rank(), num_shards=self.world,
                                  skip_bad_images=data.skip_bad_images, channels_last=cfg.run.channels_last)
        self.loader.set_epoch(0)
        self.steps_per_epoch = len(self.loader) // accum  # optimizer steps; leftover micro-batches unused
        if self.steps_per_epoch == 0:
            raise ValueError(f"no training step: {len(train_set)} images make {len(self.loader)} batches of "
                             f"{self.micro_batch} per process, fewer than --grad-accum {accum}")
        if cfg.run.sync_bn:
            model = convert_sync_batchnorm(model, on_gpu=self.device.type == "cuda")
        optimizer = build_optimizer(model, cfg.optim)
        scheduler = build_scheduler(optimizer, cfg.optim, self.steps_per_epoch)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config)
        load_weights_only(self.engine)
        self.model = self.engine.module
        self.mean_maps = mean_maps
        mean_maps_device = None if mean_maps is None else mean_maps.maps.to(self.device)
        self.training_step = TrainStep(self.engine, options, mean_maps_device)
        self.epoch = 0  # epochs completed
        self.step_in_epoch = 0  # optimizer steps done in the current epoch
        self.stats = EpochStats()
        self.last_images = None  # the latest micro-batch, on which a checkpoint's model must be finite
        self.dir = Path(cfg.run.out) / cfg.run_name
        self.log = JsonLog(self.dir / "log.jsonl")
        fault = os.environ.get(FAULT_ENV)
        self.fault_after_step = int(fault) if fault else None

    @property
    def global_step(self) -> int:
        """Optimizer steps taken since the start of the run."""
        return self.epoch * self.steps_per_epoch + self.step_in_epoch

    # -- one step -----------------------------------------------------------------------
    def train_step(self, images: torch.Tensor, labels: torch.Tensor, stats: EpochStats) -> bool:
        """One micro-batch through ``TrainStep`` (forward, loss, backward, engine step); True when
        it ended an optimizer step (every ``grad_accum`` micro-batches)."""
        boundary = self.engine.is_gradient_accumulation_boundary()
        stats.add(self.training_step.step(images, labels), len(labels))
        return boundary

    # -- one epoch ----------------------------------------------------------------------
    def train_epoch(self, progress=None) -> dict:
        cfg, accum = self.cfg, self.cfg.optim.grad_accum
        self.model.train()
        loader = self.loader
        loader.set_epoch(self.epoch, start_batch=self.step_in_epoch * accum)
        task = None if progress is None else progress.add_task(
            f"{cfg.run_name} epoch {self.epoch + 1}/{cfg.optim.epochs}", total=self.steps_per_epoch,
            completed=self.step_in_epoch, info="", unit="step")
        stats, start, seen = self.stats, time.perf_counter(), 0
        lr = self.optimizer.param_groups[0]["lr"]
        micro_left = (self.steps_per_epoch - self.step_in_epoch) * accum
        for micro, (images, labels, _) in enumerate(loader, 1):
            if micro > micro_left:
                break
            lr = self.optimizer.param_groups[0]["lr"]
            seen += len(labels)
            self.last_images = images.to(self.device, non_blocking=True)
            if not self.train_step(self.last_images, labels.to(self.device, non_blocking=True), stats):
                continue
            self.step_in_epoch += 1
            step = self.step_in_epoch
            if step % cfg.run.log_every == 0 or step == self.steps_per_epoch:
                means = stats.means()
                if task is not None:
                    rate = self.world * seen / (time.perf_counter() - start)
                    info = " ".join(f"{k}={v:.3f}" for k, v in means.items()) + f" {rate:.0f} img/s"
                    progress.update(task, completed=step, info=info)
            elif task is not None:
                progress.update(task, completed=step)
            if step < self.steps_per_epoch:  # the epoch's last step is saved by fit()
                every = cfg.run.checkpoint_every
                if every and self.global_step % every == 0:
                    self.save()
                self._fault_point()
        seconds = time.perf_counter() - start
        totals = stats.totals()
        record = {"run": cfg.run_name, "epoch": self.epoch + 1, "lr": lr, **stats.means(totals),
                  "images_per_s": self.world * seen / seconds, "seconds": seconds,
                  "skipped_images": len(self.train_set.split.skipped) + len(loader.skipped),
                  "processes": self.world}
        self.epoch += 1
        self.step_in_epoch = 0
        self.stats = EpochStats()
        return record

    def _fault_point(self) -> None:
        """Simulated fault (``WSOL_FAST_FAULT_AFTER_STEP``): exit at once, as a killed process would."""
        if self.fault_after_step is not None and self.global_step == self.fault_after_step:
            os._exit(FAULT_EXIT_CODE)

    def fit(self) -> list[dict]:
        """Train up to ``optim.epochs``, checkpointing after every epoch (and every
        ``checkpoint_every`` steps); returns the epoch records."""
        records = []
        main = collectives.is_main()
        with make_progress() if main else contextlib.nullcontext() as progress:
            while self.epoch < self.cfg.optim.epochs:
                epoch = self.epoch + 1
                try:
                    record = self.train_epoch(progress)
                    self.save()
                except NonFiniteLossError as error:
                    raise NonFiniteLossError(f"epoch {epoch}: {error}; stopped. {self._kept()}") from error
                if main:
                    self.log.write(record)
                records.append(record)
                self._fault_point()
        return records

    def restart_epoch_stats(self, totals: dict | None) -> None:
        """Start the epoch's sums afresh, from ``totals`` (a checkpoint's, read back over all
        ranks) on rank 0 only."""
        self.stats = EpochStats()
        if totals is not None and collectives.is_main():
            self.stats.load_totals(totals)
