"""Datasets: split records, the CUB reader, the synthetic WSOL set, transforms and loaders
(``make_loader``: NVIDIA DALI or the torch DataLoader).

``load_split(dataset, data_root, split)`` is the entry point; ``DATASETS`` lists the names.
"""
from __future__ import annotations

from pathlib import Path

from ..config import DATASETS, LOADERS, TRAIN_CROPS, scaled_resize
from .augmentation import derive_seed
from .cub import SPLITS, read_cub
from .datasets import (
    SampleLoader,
    TorchLoader,
    WSOLDataset,
    build_loader,
    collate,
    epoch_indices,
    shard_range,
)
from .imagenet import UNKNOWN_SIZE, read_imagenet
from .images import load_rgb
from .loaders import make_loader
from .records import AnnotationError, ImageReadError, WSOLSplit, hold_out
from .synthetic import MARKER_NAME, SyntheticSpec, generate_synthetic, render_sample
from .transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    bas_boxes,
    eval_transform,
    normalize_pixels,
    resize_boxes,
    resize_only_transform,
    train_transform,
)
from .wsolevaluation import read_wsolevaluation

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


__all__ = [
    "DATASETS",
    "LOADERS",
    "TRAIN_CROPS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MARKER_NAME",
    "AnnotationError",
    "ImageReadError",
    "SPLITS",
    "SampleLoader",
    "TorchLoader",
    "UNKNOWN_SIZE",
    "SyntheticSpec",
    "WSOLDataset",
    "WSOLSplit",
    "hold_out",
    "bas_boxes",
    "build_loader",
    "collate",
    "derive_seed",
    "epoch_indices",
    "eval_transform",
    "normalize_pixels",
    "generate_synthetic",
    "load_rgb",
    "load_split",
    "make_loader",
    "read_cub",
    "read_imagenet",
    "read_wsolevaluation",
    "render_sample",
    "resize_boxes",
    "resize_only_transform",
    "scaled_resize",
    "shard_range",
    "train_transform",
]
