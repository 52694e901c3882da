"""One training run from a config: data, model, (late stage) class-mean maps, trainer. Every
process of a ``deepspeed`` launch runs it; rank 0 alone prints and writes the run files."""
import json
from pathlib import Path

import torch

from .. import collectives
from ..checkpoint import load_checkpoint
from ..config import TrainConfig
from ..data import WSOLDataset, load_data_split
from ..mean_maps import MeanMaps
from ..models import MobileNetBAS, load_pretrained_backbone
from ..models.restore import model_from_checkpoint, model_from_state
from . import distributed
from .determinism import use_deterministic_algorithms
from .mean_map_pass import compute_mean_maps
from .progress import console, print_warning
from .run_lock import run_folder_lock
from .run_checkpoint import CHECKPOINT_NAME
from .trainer import Trainer, seed_everything


def run_training(cfg: TrainConfig, resume: bool = False) -> Trainer:
    """Train one stage as configured (this process's part of it under ``deepspeed``), holding the
    lock of its run folder ``OUT/<cam|early|late>`` throughout; returns the finished trainer."""
    distributed.init_process_group()
    cfg.run.device = distributed.resolve_device(cfg.run.device)
    with run_folder_lock(Path(cfg.run.out) / cfg.run_name):
        return _train(cfg, resume)


def _train(cfg: TrainConfig, resume: bool) -> Trainer:
    resume_state = None
    if resume:  # the saved configuration wins; only the number of epochs may grow
        own = Path(cfg.run.out) / cfg.run_name / CHECKPOINT_NAME
        if not own.exists():
            raise FileNotFoundError(f"--resume: no checkpoint to resume from at {own}")
        resume_state = load_checkpoint(own)
        saved = TrainConfig.from_dict(resume_state["config"])
        saved.optim.epochs, saved.run.out, saved.run.device = cfg.optim.epochs, cfg.run.out, cfg.run.device
        saved.run.checkpoint_every = cfg.run.checkpoint_every
        cfg = saved
    seed_everything(cfg.run.seed)
    if cfg.run.deterministic:
        use_deterministic_algorithms()
    with collectives.main_first():  # a synthetic set is generated once, by rank 0
        train_split = load_data_split(cfg, "train")
    if train_split.skipped and collectives.is_main():
        print_warning(f"--skip-bad-images: {len(train_split.skipped)} image(s) of the training split left out, "
                      f"e.g. {train_split.skipped[0][1]}")
    cfg.model.num_classes = train_split.num_classes
    out_dir = Path(cfg.run.out) / cfg.run_name
    own_checkpoint = out_dir / CHECKPOINT_NAME
    if not resume and own_checkpoint.exists():
        raise FileExistsError(f"{own_checkpoint} exists: pass --resume to continue it, or another --out")

    mean_maps = None
    if resume:
        model = model_from_state(resume_state, own_checkpoint, train_split.num_classes)
        if "mean_maps" in resume_state:
            mean_maps = MeanMaps.from_state(resume_state["mean_maps"])
    elif cfg.run.stage == "late":
        init = Path(cfg.run.init) if cfg.run.init else Path(cfg.run.out) / "early" / CHECKPOINT_NAME
        if not init.exists():
            raise FileNotFoundError(f"the late stage starts from an early-stage checkpoint; none at {init} "
                                    "(run --stage early first or pass --init)")
        model, _ = model_from_checkpoint(init, train_split.num_classes)
        cfg.model.width_mult = model.width_mult
        if cfg.loss.method == "bas":
            mean_maps = compute_mean_maps(cfg, model, train_split)
    else:
        model = MobileNetBAS(cfg.model.num_classes, cfg.model.width_mult)
        if cfg.model.pretrained:
            kind = load_pretrained_backbone(model.features, cfg.model.pretrained)
            if collectives.is_main():
                console.print(f"backbone initialized from {cfg.model.pretrained} ({kind} format)")

    train_set = WSOLDataset(train_split, train=True, image_size=cfg.data.image_size,
                            resize=cfg.data.resize, seed=cfg.run.seed, train_crop=cfg.data.train_crop)
    trainer = Trainer(cfg, model, train_set, mean_maps)
    main = collectives.is_main()
    if resume:
        trainer.load_state_dict(resume_state, own_checkpoint)
        if main:
            console.print(f"resumed {own_checkpoint} at epoch {trainer.epoch}, step {trainer.step_in_epoch} "
                          f"of {trainer.steps_per_epoch}")
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        console.print(f"{cfg.run_name}: {len(train_split)} training images, "
                      f"{cfg.model.num_classes} classes, {trainer.world} process(es) on {cfg.run.device}"
                      f"{' and more' if trainer.world > 1 else ''}, batch {cfg.data.batch_size} = "
                      f"{trainer.micro_batch} x {cfg.optim.grad_accum} x {trainer.world}, "
                      f"threads {torch.get_num_threads()}, loader: {trainer.loader}")
    trainer.fit()
    return trainer
