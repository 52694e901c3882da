"""One training run from a config: data, model, (late stage) class-mean maps, trainer. Every
process of a ``deepspeed`` launch runs it; rank 0 alone prints and writes the run files."""
import contextlib
import json
import os
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, load_checkpoint
from ..config import TrainConfig
from ..data import SyntheticSpec, WSOLDataset, hold_out, load_split, make_loader
from ..mean_maps import MeanMaps, class_mean_maps
from ..models import MobileNetBAS, load_pretrained_backbone
from ..models.health import model_problem
from . import distributed
from .determinism import use_deterministic_algorithms
from .progress import console, make_progress, print_warning
from .run_lock import run_folder_lock
from .trainer import CHECKPOINT_NAME, Trainer, run_name, seed_everything


def synthetic_spec(cfg: TrainConfig) -> SyntheticSpec:
    data = cfg.data
    return SyntheticSpec(num_classes=data.synthetic_classes, train_per_class=data.synthetic_train_per_class,
                         test_per_class=data.synthetic_test_per_class, image_size=data.synthetic_image_size,
                         seed=data.synthetic_seed)


def load_data_split(cfg: TrainConfig, split: str):
    """The ``train``, ``val`` or ``test`` split of the configured dataset (synthetic: generated
    if absent). With ``data.val_fraction > 0``, ``val`` is that fraction of the training split
    (per class, fixed seed) and ``train`` is the rest; otherwise there is no ``val``. With
    ``data.skip_bad_images`` images the reader cannot open are left out, listed in ``skipped``."""
    spec = synthetic_spec(cfg) if cfg.data.dataset == "synthetic" else None
    options = dict(synthetic_spec=spec, skip_bad_images=cfg.data.skip_bad_images)
    if split == "test":
        return load_split(cfg.data.dataset, cfg.data.data_root, "test", **options)
    train = load_split(cfg.data.dataset, cfg.data.data_root, "train", **options)
    if cfg.data.val_fraction <= 0:
        if split == "val":
            raise ValueError("no validation split: train with --val-fraction > 0 to hold one out")
        return train
    rest, val = hold_out(train, cfg.data.val_fraction, seed=0)
    return val if split == "val" else rest


def model_from_checkpoint(path: str | Path, num_classes: int | None = None) -> tuple[MobileNetBAS, dict]:
    """Rebuild the model saved in a checkpoint; ``num_classes`` (the dataset's) must match."""
    state = load_checkpoint(path)
    return model_from_state(state, path, num_classes), state


def model_from_state(state: dict, path: str | Path, num_classes: int | None = None) -> MobileNetBAS:
    """The model of a loaded checkpoint ``state`` (read from ``path``, named in errors)."""
    saved = TrainConfig.from_dict(state["config"])
    if num_classes is not None and saved.model.num_classes != num_classes:
        raise ValueError(f"checkpoint {path} was trained for {saved.model.num_classes} classes, "
                         f"the dataset has {num_classes}")
    model = MobileNetBAS(saved.model.num_classes, saved.model.width_mult)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {path} does not fit MobileNetBAS(width_mult="
                              f"{saved.model.width_mult}): {error}") from error
    problem = model_problem(model)
    if problem:
        raise CheckpointError(f"checkpoint {path} is not usable: {problem}")
    return model


def compute_mean_maps(cfg: TrainConfig, model: MobileNetBAS, train_split) -> MeanMaps:
    """Class-mean foreground maps over every training image (test transform, eval mode). Each
    process reads its shard (every image exactly once over all); sums and counts are all-reduced,
    so every process returns the same maps, those of one process up to float summation order."""
    world = distributed.world_size()
    if len(train_split) < world:
        raise ValueError(f"class-mean maps: {len(train_split)} training images for {world} processes")
    device = torch.device(cfg.run.device)  # run_training resolved it to this process's device
    dataset = WSOLDataset(train_split, train=False, image_size=cfg.data.image_size, resize=cfg.data.resize)
    loader = make_loader(dataset, cfg.data.batch_size, loader=cfg.data.loader, workers=cfg.data.workers,
                         device=str(device), shard_id=distributed.rank(), num_shards=world,
                         skip_bad_images=cfg.data.skip_bad_images)
    with make_progress() if distributed.is_main() else contextlib.nullcontext() as progress:
        advance = None
        if progress is not None:
            task = progress.add_task("class-mean maps", total=len(dataset), info="", unit="images")
            advance = lambda n: progress.advance(task, n * world)  # noqa: E731 (shards advance alike)
        maps, counts = class_mean_maps(model.to(device), loader, cfg.model.num_classes, device, advance,
                                       reduce=distributed.all_reduce_sum_)
    mean_maps = MeanMaps(maps.cpu(), counts.cpu())
    if loader.skipped and distributed.is_main():
        print_warning(f"class-mean maps: {len(loader.skipped)} more image(s) left out while reading (this process)")
    if mean_maps.empty_classes and distributed.is_main():
        print_warning(f"classes without a training image (zero mean map): {mean_maps.empty_classes}")
    return mean_maps


def resolve_device(requested: str) -> str:
    """This process's device: DeepSpeed's accelerator decides (``cuda:LOCAL_RANK`` or ``cpu``);
    ``requested`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) must agree with it."""
    actual = distributed.device()
    if requested not in ("auto", actual.type, str(actual)):
        raise ValueError(f"--device {requested}: this process runs on {actual} (DeepSpeed accelerator "
                         f"DS_ACCELERATOR={os.environ.get('DS_ACCELERATOR')}; select GPUs with "
                         "CUDA_VISIBLE_DEVICES or the deepspeed launcher's --include)")
    return str(actual)


def run_training(cfg: TrainConfig, resume: bool = False) -> Trainer:
    """Train one stage as configured (this process's part of it under ``deepspeed``), holding the
    lock of its run folder ``OUT/<cam|early|late>`` throughout; returns the finished trainer."""
    distributed.init_process_group()
    cfg.run.device = resolve_device(cfg.run.device)
    with run_folder_lock(Path(cfg.run.out) / run_name(cfg)):
        return _train(cfg, resume)


def _train(cfg: TrainConfig, resume: bool) -> Trainer:
    resume_state = None
    if resume:  # the saved configuration wins; only the number of epochs may grow
        own = Path(cfg.run.out) / run_name(cfg) / CHECKPOINT_NAME
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
    with distributed.main_first():  # a synthetic set is generated once, by rank 0
        train_split = load_data_split(cfg, "train")
    if train_split.skipped and distributed.is_main():
        print_warning(f"--skip-bad-images: {len(train_split.skipped)} image(s) of the training split left out, "
                      f"e.g. {train_split.skipped[0][1]}")
    cfg.model.num_classes = train_split.num_classes
    out_dir = Path(cfg.run.out) / run_name(cfg)
    own_checkpoint = out_dir / CHECKPOINT_NAME
    if not resume and own_checkpoint.exists():
        raise FileExistsError(f"{own_checkpoint} exists: pass --resume to continue it, or another --out")

    mean_maps = None
    if resume:
        model = model_from_state(resume_state, own_checkpoint, train_split.num_classes)
        if "mean_maps" in resume_state:
            mean_maps = MeanMaps(resume_state["mean_maps"]["maps"], resume_state["mean_maps"]["counts"])
    elif cfg.run.stage == "late":
        init = Path(cfg.run.init) if cfg.run.init else Path(cfg.run.out) / "early" / CHECKPOINT_NAME
        if not init.exists():
            raise FileNotFoundError(f"the late stage starts from an early-stage checkpoint; none at {init} "
                                    "(run --stage early first or pass --init)")
        model, _ = model_from_checkpoint(init, train_split.num_classes)
        cfg.model.width_mult = model.width_mult
        if cfg.loss.method == "bas":
            mean_maps = compute_mean_maps(cfg, model, train_split)
            if distributed.is_main():
                mean_maps.save(out_dir / "mean_maps.pt")
    else:
        model = MobileNetBAS(cfg.model.num_classes, cfg.model.width_mult)
        if cfg.model.pretrained:
            kind = load_pretrained_backbone(model.features, cfg.model.pretrained)
            if distributed.is_main():
                console.print(f"backbone initialized from {cfg.model.pretrained} ({kind} format)")

    train_set = WSOLDataset(train_split, train=True, image_size=cfg.data.image_size,
                            resize=cfg.data.resize, seed=cfg.run.seed, train_crop=cfg.data.train_crop)
    trainer = Trainer(cfg, model, train_set, mean_maps)
    main = distributed.is_main()
    if resume:
        trainer.load_state_dict(resume_state, own_checkpoint)
        if main:
            console.print(f"resumed {own_checkpoint} at epoch {trainer.epoch}, step {trainer.step_in_epoch} "
                          f"of {trainer.steps_per_epoch}")
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        console.print(f"{run_name(cfg)}: {len(train_split)} training images, "
                      f"{cfg.model.num_classes} classes, {trainer.world} process(es) on {cfg.run.device}"
                      f"{' and more' if trainer.world > 1 else ''}, batch {cfg.data.batch_size} = "
                      f"{trainer.micro_batch} x {cfg.optim.grad_accum} x {trainer.world}, "
                      f"threads {torch.get_num_threads()}, loader: {trainer.loader}")
    trainer.fit()
    return trainer
