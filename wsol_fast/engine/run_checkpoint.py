"""The checkpoint protocol of a training run (``CheckpointProtocol``, which ``Trainer`` follows).

After every epoch and every ``checkpoint_every`` optimizer steps: DeepSpeed's
``save_checkpoint`` (model, optimizer, schedule, and our client state: epoch, position in the
epoch, RNG, partial epoch sums) into ``deepspeed/<tag>/``, then, once every rank has finished, an
atomic ``checkpoint.pt`` (portable model with averaged BatchNorm statistics, config, mean maps,
and the tag). ``checkpoint.pt`` is the commit: a save cut short leaves the previous one, and its
tag, in force. Only a usable model (finite weights, a finite forward on the latest batch) is
saved. A resume loads the DeepSpeed checkpoint ``checkpoint.pt`` names, then our state.
"""
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from .. import collectives
from ..checkpoint import CheckpointError, atomic_save
from ..errors import WsolFastError
from ..models.health import model_problem
from . import distributed

CHECKPOINT_NAME = "checkpoint.pt"
DEEPSPEED_DIR = "deepspeed"  # DeepSpeed checkpoints, beside checkpoint.pt


class NonFiniteLossError(WsolFastError, FloatingPointError):
    """A loss, the weights or the model's outputs became NaN or Inf; the last checkpoint on disk is
    the last good one."""


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


class CheckpointProtocol:
    """Saving and resuming a trainer: ``save`` writes both checkpoints, ``load_state_dict``
    resumes from ``checkpoint.pt``. The trainer provides ``cfg``, ``engine``, ``model``,
    ``scheduler``, ``mean_maps``, ``stats``, ``dir``, ``device``, ``world``, ``epoch``,
    ``step_in_epoch``, ``steps_per_epoch``, ``global_step``, ``last_images`` and
    ``restart_epoch_stats(totals)``."""

    def client_state(self) -> dict:
        """Our part of a DeepSpeed checkpoint: position, RNG, partial epoch sums, config."""
        totals = self.stats.totals()
        if totals["steps"]:
            self.stats.means(totals)  # a non-finite loss stops here, before anything is written
        else:
            totals = None
        return {"config": self.cfg.to_dict(), "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                "steps_per_epoch": self.steps_per_epoch, "world_size": self.world, "rng": rng_state(),
                "epoch_totals": totals}

    def state_dict(self) -> dict:
        """The portable checkpoint (``checkpoint.pt``): what evaluation and the late stage read, and
        the tag of the DeepSpeed checkpoint a resume loads."""
        state = {"config": self.cfg.to_dict(), "run": self.cfg.run_name, "epoch": self.epoch,
                 "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
                 "model": {k: v.cpu() for k, v in self.model.state_dict().items()},
                 "scheduler": self.scheduler.state_dict(), "rng": rng_state(),
                 "deepspeed": {"dir": DEEPSPEED_DIR, "tag": self.tag()}}
        if self.mean_maps is not None:
            state["mean_maps"] = self.mean_maps.to_state()
        return state

    def tag(self) -> str:
        return f"epoch{self.epoch}-step{self.global_step}"

    def save(self) -> Path:
        """DeepSpeed checkpoint of every rank, then (rank 0) the atomic ``checkpoint.pt`` naming it;
        older DeepSpeed tags are removed only after that. BatchNorm statistics are averaged first."""
        client = self.client_state()
        distributed.average_batchnorm_buffers_(self.model)
        self._check_usable()
        ds_dir = self.dir / DEEPSPEED_DIR
        self.engine.save_checkpoint(str(ds_dir), self.tag(), client_state=client, save_latest=False)
        path, failure = self.dir / CHECKPOINT_NAME, None
        if collectives.is_main():
            try:
                atomic_save(self.state_dict(), path)
                for old in ds_dir.iterdir():
                    if old.name != self.tag():
                        shutil.rmtree(old, ignore_errors=True)
            except OSError as error:
                failure = error
        failed = collectives.all_reduce_sum_(torch.tensor([float(failure is not None)], device=self.device))
        if failure is not None:
            raise failure
        if failed.item():
            raise OSError(f"could not write checkpoint {path} (on rank 0); the previous one is kept")
        return path

    def _check_usable(self) -> None:
        """Raise ``NonFiniteLossError`` unless the model's weights, and its forward pass on the latest
        batch, are finite on every rank (a collective): only such a model becomes a checkpoint."""
        problem = model_problem(self.model, self.last_images)
        bad = collectives.all_reduce_sum_(torch.tensor([float(problem is not None)], device=self.device))
        if bad.item():
            raise NonFiniteLossError(f"after optimizer step {self.global_step} the model is not usable: "
                                     f"{problem or 'so another process found'}")

    def _kept(self) -> str:
        """Which checkpoint survives a failed epoch (for error messages)."""
        path = self.dir / CHECKPOINT_NAME
        if path.exists():
            return f"The last good checkpoint is kept: {path} (after epoch {self.epoch})"
        return "No checkpoint was written"

    def load_state_dict(self, state: dict, path: Path) -> None:
        """Resume from the portable checkpoint ``state`` (read from ``path``): load the DeepSpeed
        checkpoint it names (model, optimizer, schedule) and our position, RNG and sums."""
        ds_dir = path.parent / state["deepspeed"]["dir"]
        tag = state["deepspeed"]["tag"]
        if not (ds_dir / tag).is_dir():
            raise FileNotFoundError(f"{path} names the DeepSpeed checkpoint {ds_dir / tag}, which is missing")
        try:
            loaded, client = self.engine.load_checkpoint(str(ds_dir), tag)
        except RuntimeError as error:  # load_state_dict's size mismatches
            lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
            gist = next((line for line in lines if "size mismatch" in line), lines[0])
            raise CheckpointError(f"the DeepSpeed checkpoint {ds_dir / tag} does not fit the model of {path} "
                                  f"(width {self.cfg.model.width_mult}): {gist}") from error
        if loaded is None:
            raise CheckpointError(f"DeepSpeed could not load its checkpoint {ds_dir / tag}")
        if client["steps_per_epoch"] != self.steps_per_epoch:
            raise ValueError(f"{path}: saved with {client['steps_per_epoch']} steps per epoch "
                             f"({client['world_size']} processes), this run has {self.steps_per_epoch} "
                             f"({self.world} processes); resume with the same --batch-size and --grad-accum")
        self.epoch, self.step_in_epoch = client["epoch"], client["step_in_epoch"]
        self.restart_epoch_stats(client["epoch_totals"])
        restore_rng_state(client["rng"])
