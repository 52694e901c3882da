"""PyTorch dataset over a ``WSOLSplit`` with reproducible augmentation, the loaders' common
part (``SampleLoader``: per-rank sample lists, ``epoch_indices``) and the torch DataLoader path
(``TorchLoader``). ``loaders.make_loader`` picks between it and DALI's (``dali_loader``).
"""
from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision.transforms import InterpolationMode

from ..config import TRAIN_CROPS, DataConfig
from .augmentation import bas_crop_params, derive_seed, resized_crop_box, resized_crop_params
from .dali_files import describe, file_problem, find_problems, header_problem
from .images import load_rgb
from .records import ImageReadError, WSOLSplit
from .transforms import (
    bas_boxes,
    eval_transform,
    normalize_pixels,
    resize_boxes,
    resize_only_transform,
    train_transform,
)

EVAL_PROTOCOLS = ("bas", "wsolevaluation")


def resized_crop(image: Image.Image, params: tuple, image_size: int) -> torch.Tensor:
    """Cut ``params`` (one sample's ``resized_crop_params``) out of ``image``, resize to (image_size, image_size) bilinear
    with antialiasing, flip -> (3, image_size, image_size) uint8 pixels."""
    left, top, crop_w, crop_h = resized_crop_box(image.width, image.height, *params[:4])
    image = TF.resized_crop(image, top, left, crop_h, crop_w, [image_size, image_size],
                            interpolation=InterpolationMode.BILINEAR, antialias=True)
    if params[4]:
        image = TF.hflip(image)
    return TF.pil_to_tensor(image)


class WSOLDataset(Dataset):
    """Images of a split as ``(pixels (3, S, S) uint8, label int, index int)``; the loaders
    normalize whole batches (``transforms.normalize_pixels``: in the workers, or on the GPU).

    Train mode applies the ``train_crop`` augmentation ("bas": resize, random crop, flip;
    "random-resized": ``resized_crop``) with parameters drawn from ``(seed, epoch, index)``
    (``augmentation``), so a sample's augmentation depends on neither worker count nor order;
    call ``set_epoch`` before each epoch. ``__getitems__`` (a DataLoader batch) draws them for the
    whole batch at once. Eval mode applies the test transform of
    ``eval_protocol``: ``"bas"`` (resize, center crop) or ``"wsolevaluation"`` (resize only);
    ``eval_boxes(i)`` gives the sample's ground-truth boxes under that same transform.
    """

    def __init__(
        self,
        split: WSOLSplit,
        train: bool,
        image_size: int = DataConfig.image_size,
        resize: int = DataConfig.resize,
        seed: int = 0,
        eval_protocol: str = "bas",
        train_crop: str = "bas",
    ) -> None:
        if eval_protocol not in EVAL_PROTOCOLS:
            raise ValueError(f"eval_protocol must be one of {EVAL_PROTOCOLS}, got {eval_protocol!r}")
        if train_crop not in TRAIN_CROPS:
            raise ValueError(f"train_crop must be one of {TRAIN_CROPS}, got {train_crop!r}")
        self.split = split
        self.train = train
        self.image_size = image_size
        self.resize = resize
        self.seed = seed
        self.eval_protocol = eval_protocol
        self.train_crop = train_crop
        self.epoch = 0
        if train:
            self.transform = train_transform(image_size, resize)
        elif eval_protocol == "bas":
            self.transform = eval_transform(image_size, resize)
        else:
            self.transform = resize_only_transform(image_size)

    def __len__(self) -> int:
        return len(self.split)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation of epoch ``epoch`` (train mode)."""
        self.epoch = int(epoch)

    def augmentation(self, indices: np.ndarray) -> tuple[np.ndarray, ...]:
        """This epoch's augmentation parameters of samples ``indices`` (N,), one (N,) array each:
        ``(top, left, flip)`` for the BAS crop, ``(width, height, x, y, flip)`` for the random
        resized crop (``augmentation`` module)."""
        if self.train_crop == "bas":
            return bas_crop_params(self.seed, self.epoch, indices, self.image_size, self.resize)
        return resized_crop_params(self.seed, self.epoch, indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, int, int]]:
        indices = [int(index) for index in indices]
        if not self.train:
            return [(self.transform.pixels(load_rgb(self.split.image_paths[i], i)), int(self.split.labels[i]), i)
                    for i in indices]
        columns = self.augmentation(np.array(indices, dtype=np.int64))
        samples = []
        for index, params in zip(indices, zip(*(column.tolist() for column in columns))):
            image = load_rgb(self.split.image_paths[index], index)
            if self.train_crop == "bas":
                tensor = self.transform.pixels(image, *params)
            else:
                tensor = resized_crop(image, params, self.image_size)
            samples.append((tensor, int(self.split.labels[index]), index))
        return samples

    def eval_boxes(self, index: int) -> np.ndarray:
        """(K, 4) float32 ground-truth boxes of sample ``index`` in the evaluated image's pixels."""
        width, height = (int(v) for v in self.split.sizes[index])
        boxes = self.split.boxes[index]
        if self.eval_protocol == "bas":
            return bas_boxes(boxes, width, height, self.resize, self.image_size)
        return resize_boxes(boxes, width, height, self.image_size)


class TenCropDataset(Dataset):
    """(10, 3, S, S) ten crops (corners, center, and their flips) of the resized image, for the
    ten-crop classification of the BAS protocol; yields ``(crops, label, index)``."""

    def __init__(self, split, image_size: int = DataConfig.image_size, resize: int = DataConfig.resize):
        self.split, self.image_size, self.resize = split, image_size, resize

    def __len__(self):
        return len(self.split)

    def __getitem__(self, index):
        image = TF.resize(load_rgb(self.split.image_paths[index], index), [self.resize, self.resize],
                          antialias=True)
        crops = TF.ten_crop(image, self.image_size)
        pixels = torch.stack([TF.pil_to_tensor(c) for c in crops])
        return normalize_pixels(pixels), int(self.split.labels[index]), index


def build_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader for one epoch: its shuffle order is a deterministic function of
    ``(seed, epoch)``; ``dataset.set_epoch(epoch)`` is called when the dataset has it.

    Build a new loader per epoch: iterating the same loader twice continues its generator.
    Persistent workers off; batches ``(images (B, 3, S, S) float32 normalized, labels (B,), indices (B,))``.
    """
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    generator = torch.Generator().manual_seed(derive_seed(seed, epoch))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        generator=generator,
        drop_last=drop_last,
        persistent_workers=False,
        collate_fn=collate,
    )


def shard_range(count: int, shard_id: int, num_shards: int) -> tuple[int, int]:
    """``[start, stop)`` of shard ``shard_id`` of ``count`` items in contiguous blocks, as DALI's
    readers split a dataset (``count * shard_id // num_shards``); sizes differ by at most one."""
    if not 0 <= shard_id < num_shards:
        raise ValueError(f"need 0 <= shard_id < num_shards, got shard_id={shard_id}, num_shards={num_shards}")
    return count * shard_id // num_shards, count * (shard_id + 1) // num_shards


def epoch_indices(candidates: np.ndarray, shuffle: bool, seed: int, epoch: int, shard_id: int = 0,
                  num_shards: int = 1) -> np.ndarray:
    """(M,) int64 dataset indices that rank ``shard_id`` reads in ``epoch``, in reading order.

    Training (``shuffle``): ``candidates`` permuted by ``torch.randperm`` seeded from
    ``(seed, epoch)``; rank r takes every ``num_shards``-th sample from position r on, an equal
    ``len // num_shards`` each (equal step counts; the few left over change every epoch). So with
    a per-rank batch b, step k of all ranks together reads permutation positions
    ``[k*b*num_shards, (k+1)*b*num_shards)``: the same global batch as one process with batch
    ``b*num_shards``. Evaluation: ``candidates`` in order, split by ``shard_range``, so every
    sample is read exactly once over all ranks.
    """
    candidates = np.asarray(candidates, dtype=np.int64)
    if shuffle:
        generator = torch.Generator().manual_seed(derive_seed(seed, epoch))
        order = candidates[torch.randperm(len(candidates), generator=generator).numpy()]
        shard_range(len(order), shard_id, num_shards)  # validates the ids
        per_rank = len(order) // num_shards
        return order[:per_rank * num_shards][shard_id::num_shards]
    start, stop = shard_range(len(candidates), shard_id, num_shards)
    return candidates[start:stop]


def checked_indices(paths: list[Path], skip_bad_images: bool, unsupported: tuple[str, ...] = (),
                    listed: bool = False) -> tuple[np.ndarray, list]:
    """``(indices to read (N',) int64, skipped [(index, path, problem)])`` of ``paths``.

    Every file must exist and be non-empty, else ImageReadError naming the files; with
    ``skip_bad_images`` such files, and files that fail ``dali_files.header_problem`` (unknown
    format, a format in ``unsupported`` by the loader, truncated JPEG/PNG), are left out and
    counted instead. ``listed`` (paths from a folder listing, which exist) without
    ``skip_bad_images``: nothing to check.
    """
    if listed and not skip_bad_images:
        return np.arange(len(paths), dtype=np.int64), []
    check = partial(header_problem, unsupported=unsupported) if skip_bad_images else file_problem
    problems = find_problems(paths, range(len(paths)), check)
    if problems and not skip_bad_images:
        raise ImageReadError(f"{describe(problems)} (pass --skip-bad-images to leave such files out)")
    if problems:
        warnings.warn(f"skipping {describe(problems)}", RuntimeWarning, stacklevel=3)
    bad = {index for index, _, _ in problems}
    return np.array([i for i in range(len(paths)) if i not in bad], dtype=np.int64), problems


class SampleLoader:
    """What both loaders share: the checked sample list, the per-epoch order of this rank, the
    batch count and the record of skipped images (``skipped``: ``[(index, path, problem)]``).

    Iterate to get ``(images (B, 3, S, S) float32, labels (B,) int64, indices (B,) int64)``
    batches of one epoch; call ``set_epoch`` before each epoch. ``channels_last``: the images
    come in channels_last memory (DALI writes them so; the torch loader's workers convert).
    """

    undecodable_formats: tuple[str, ...] = ()  # image formats (``dali_files.image_kind``) this loader cannot read

    def __init__(self, dataset: Dataset, batch_size: int, shuffle: bool = False, drop_last: bool = False,
                 shard_id: int = 0, num_shards: int = 1, skip_bad_images: bool = False,
                 channels_last: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        shard_range(0, shard_id, num_shards)  # validates the ids
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, batch_size, shuffle, drop_last
        self.shard_id, self.num_shards, self.skip_bad_images = shard_id, num_shards, skip_bad_images
        self.channels_last = channels_last
        self.seed = int(getattr(dataset, "seed", 0))
        self.epoch = 0
        self.start_batch = 0
        self.candidates, self.skipped = checked_indices(dataset.split.image_paths, skip_bad_images,
                                                        self.undecodable_formats, dataset.split.files_listed)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the order (training) and augmentation of epoch ``epoch``, starting at its batch
        ``start_batch`` (a resume mid-epoch: the first ``start_batch`` batches are left out)."""
        if start_batch < 0:
            raise ValueError(f"start_batch must be >= 0, got {start_batch}")
        self.epoch, self.start_batch = int(epoch), int(start_batch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def epoch_indices(self) -> np.ndarray:
        """Dataset indices this rank reads this epoch from batch ``start_batch`` on, in order."""
        indices = epoch_indices(self.candidates, self.shuffle, self.seed, self.epoch, self.shard_id,
                                self.num_shards)
        return indices[self.start_batch * self.batch_size:]

    def batch_count(self, samples: int) -> int:
        return samples // self.batch_size if self.drop_last else -(-samples // self.batch_size)

    def __len__(self) -> int:
        return self.batch_count(len(self.epoch_indices()))

    def record_skipped(self, problems: list) -> None:
        """Count images found bad while reading (skip mode) and say so."""
        self.skipped.extend(problems)
        warnings.warn(f"skipping {describe(problems)} ({len(self.skipped)} skipped in all)", RuntimeWarning,
                      stacklevel=3)


class SkippingDataset(Dataset):
    """``dataset``'s items, or ``(None, index, problem)`` for an image that cannot be read."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            return self.dataset[index]
        except ImageReadError as error:
            return None, int(index), str(error)

    def __getitems__(self, indices: list[int]) -> list:
        """The dataset's batch fetch; item by item only for a batch that holds a bad image."""
        fetch = getattr(self.dataset, "__getitems__", None)
        if fetch is not None:
            try:
                return fetch(indices)
            except ImageReadError:
                pass
        return [self[index] for index in indices]


def collate(samples: list, channels_last: bool = False, normalize: bool = True):
    """``default_collate`` (in the worker): the images (B, 3, S, S) normalized to float32
    (``normalize``) or left uint8 pixels, in channels_last memory when asked."""
    batch = default_collate(samples)
    if channels_last:
        batch[0] = batch[0].contiguous(memory_format=torch.channels_last)
    if normalize:
        batch[0] = normalize_pixels(batch[0])
    return batch


def collate_skipping(samples: list, channels_last: bool = False, normalize: bool = True) -> tuple:
    """``(batch or None, [(index, problem)])``: the readable samples collated, the rest listed."""
    good = [sample for sample in samples if sample[0] is not None]
    bad = [(index, problem) for image, index, problem in samples if image is None]
    return (collate(good, channels_last, normalize) if good else None), bad


class TorchLoader(SampleLoader):
    """The torch DataLoader path: ``workers`` processes, one DataLoader per epoch over
    ``epoch_indices`` (skip mode: unreadable images dropped from their batch and counted). For a
    CUDA ``device`` batches travel as uint8 pixels (a quarter of float32's bytes) in pinned memory,
    copied without blocking and normalized on the GPU: images arrive on ``device``; otherwise the
    workers normalize and images are CPU tensors. Labels and indices are always CPU tensors."""

    def __init__(self, dataset: Dataset, batch_size: int, workers: int = 0, device: str = "cpu",
                 **options) -> None:
        super().__init__(dataset, batch_size, **options)
        self.workers = workers
        self.device = torch.device(device)
        self.pixels_to_device = self.device.type == "cuda"  # uint8 batches, normalized after the copy

    def __str__(self) -> str:
        return f"torch DataLoader, {self.workers} worker processes"

    def __iter__(self):
        source = SkippingDataset(self.dataset) if self.skip_bad_images else self.dataset
        loader = DataLoader(source, batch_size=self.batch_size, sampler=self.epoch_indices().tolist(),
                            num_workers=self.workers, drop_last=self.drop_last, persistent_workers=False,
                            pin_memory=self.pixels_to_device and self.device.type == "cuda",
                            collate_fn=partial(collate_skipping if self.skip_bad_images else collate,
                                               channels_last=self.channels_last,
                                               normalize=not self.pixels_to_device))
        for batch in loader:
            if self.skip_bad_images:
                batch, bad = batch
                if bad:
                    self.record_skipped([(i, self.dataset.split.image_paths[i], p) for i, p in bad])
                if batch is None:
                    continue
            if self.pixels_to_device:
                images, labels, indices = batch
                batch = normalize_pixels(images.to(self.device, non_blocking=True)), labels, indices
            yield batch
