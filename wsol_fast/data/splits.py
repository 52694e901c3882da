"""A dataset's split by name (``load_split``), and the splits a run configuration names
(``load_data_split``: a synthetic set generated from the configured spec when absent, the
validation split held out of training, or a wsolevaluation metadata folder's own splits)."""
from __future__ import annotations

from pathlib import Path

from ..config import DATASETS, TrainConfig, wsolevaluation_dataset
from .cub import SPLITS, read_cub
from .imagenet import read_imagenet
from .records import WSOLSplit, hold_out
from .synthetic import MARKER_NAME, SyntheticSpec, generate_synthetic
from .wsolevaluation import read_wsolevaluation_split

IMAGENET_LOAD_SPLITS = {"train": "train", "test": "val", "val": "val"}


def load_split(
    dataset: str, data_root: str | Path, split: str, synthetic_spec: SyntheticSpec | None = None,
    skip_bad_images: bool = False,
) -> WSOLSplit:
    """The ``split`` ("train" or "test") of ``dataset`` (one of ``DATASETS``) at ``data_root``.

    "synthetic": generated into ``data_root`` first when it holds no finished synthetic set
    (with ``synthetic_spec``, default ``SyntheticSpec()``); a set generated from another spec
    raises ValueError when ``synthetic_spec`` is given and is read as is when it is None.
    "imagenet": "train" is the train folder, "test" (or "val") the validation set.
    ``skip_bad_images``: images whose header the reader cannot read are left out, in ``skipped``.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if dataset == "wsolevaluation":
        raise ValueError("wsolevaluation splits need their metadata folder: load_data_split (a config with "
                         "--metadata-root) or read_wsolevaluation_split")
    if dataset == "imagenet":
        if split not in IMAGENET_LOAD_SPLITS:
            raise ValueError(f"split must be one of {tuple(IMAGENET_LOAD_SPLITS)}, got {split!r}")
        return read_imagenet(data_root, IMAGENET_LOAD_SPLITS[split], skip_bad_images=skip_bad_images)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(data_root)
    if dataset == "synthetic" and (synthetic_spec is not None or not (root / MARKER_NAME).is_file()):
        generate_synthetic(root, synthetic_spec or SyntheticSpec())
    return read_cub(root, split, skip_bad_images)


def synthetic_spec(cfg: TrainConfig) -> SyntheticSpec:
    data = cfg.data
    return SyntheticSpec(num_classes=data.synthetic_classes, train_per_class=data.synthetic_train_per_class,
                         test_per_class=data.synthetic_test_per_class, image_size=data.synthetic_image_size,
                         seed=data.synthetic_seed)


def load_data_split(cfg: TrainConfig, split: str) -> WSOLSplit:
    """The ``train``, ``val`` or ``test`` split of the configured dataset (synthetic: generated
    if absent). With ``data.val_fraction > 0``, ``val`` is that fraction of the training split
    (per class, fixed seed) and ``train`` is the rest; otherwise there is no ``val``. With
    ``data.skip_bad_images`` images the reader cannot open are left out, listed in ``skipped``.
    wsolevaluation: the metadata folder's own split (``val`` is the benchmark's validation
    split, so ``val_fraction`` must be 0), with the trained model's classes when the config has them."""
    if cfg.data.dataset == "wsolevaluation":
        return _wsolevaluation_split(cfg, split)
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


def _wsolevaluation_split(cfg: TrainConfig, split: str) -> WSOLSplit:
    data = cfg.data
    if data.val_fraction > 0:
        raise ValueError("--dataset wsolevaluation has its own validation split (metadata val/): "
                         "--val-fraction must be 0")
    dataset = wsolevaluation_dataset(data)  # raises without --metadata-root
    return read_wsolevaluation_split(data.metadata_root, split, data.data_root, dataset, mask_root=data.mask_root,
                                     num_classes=cfg.model.num_classes or None)
