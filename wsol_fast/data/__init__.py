"""Datasets: split records, the CUB reader, the synthetic WSOL set, transforms and loaders
(``make_loader``: NVIDIA DALI or the torch DataLoader).

``load_split(dataset, data_root, split)`` is the entry point (``load_data_split(config, split)``
for a run's splits, wsolevaluation's among them); ``DATASETS`` lists the names.
"""
from __future__ import annotations

from ..config import DATASETS, LOADERS, TRAIN_CROPS, scaled_resize
from .augmentation import derive_seed
from .cub import SPLITS, read_cub
from .datasets import (
    SampleLoader,
    TenCropDataset,
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
from .masks import MaskFiles, load_masks
from .records import AnnotationError, ImageReadError, WSOLSplit, hold_out
from .splits import load_data_split, load_split, synthetic_spec
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
from .wsolevaluation import WSOLEVALUATION_SPLITS, read_wsolevaluation, read_wsolevaluation_split

__all__ = [
    "DATASETS",
    "LOADERS",
    "TRAIN_CROPS",
    "WSOLEVALUATION_SPLITS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MARKER_NAME",
    "MaskFiles",
    "load_masks",
    "AnnotationError",
    "ImageReadError",
    "SPLITS",
    "SampleLoader",
    "TorchLoader",
    "UNKNOWN_SIZE",
    "SyntheticSpec",
    "TenCropDataset",
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
    "load_data_split",
    "load_split",
    "synthetic_spec",
    "make_loader",
    "read_cub",
    "read_imagenet",
    "read_wsolevaluation",
    "read_wsolevaluation_split",
    "render_sample",
    "resize_boxes",
    "resize_only_transform",
    "scaled_resize",
    "shard_range",
    "train_transform",
]
