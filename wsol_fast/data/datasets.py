"""PyTorch dataset and loader over a ``WSOLSplit`` with reproducible augmentation and order."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from .records import ImageReadError, WSOLSplit
from .transforms import bas_boxes, eval_transform, resize_boxes, resize_only_transform, train_transform

EVAL_PROTOCOLS = ("bas", "wsolevaluation")


def derive_seed(*parts: int) -> int:
    """A 64-bit seed that is a deterministic, well-mixed function of the integers ``parts``."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0])


def load_rgb(path: Path, index: int) -> Image.Image:
    """Open and fully decode an image as RGB; any failure raises ImageReadError naming path and index."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"cannot read image {path} (dataset index {index}): {exc}") from exc


class WSOLDataset(Dataset):
    """Images of a split as ``(image (3, S, S) float32, label int, index int)``.

    Train mode applies the BAS augmentation with a ``torch.Generator`` seeded from
    ``(seed, epoch, index)``, so a sample's augmentation depends on neither worker count nor
    order; call ``set_epoch`` before each epoch. Eval mode applies the test transform of
    ``eval_protocol``: ``"bas"`` (resize, center crop) or ``"wsolevaluation"`` (resize only);
    ``eval_boxes(i)`` gives the sample's ground-truth boxes under that same transform.
    """

    def __init__(
        self,
        split: WSOLSplit,
        train: bool,
        image_size: int = 224,
        resize: int = 256,
        seed: int = 0,
        eval_protocol: str = "bas",
    ) -> None:
        if eval_protocol not in EVAL_PROTOCOLS:
            raise ValueError(f"eval_protocol must be one of {EVAL_PROTOCOLS}, got {eval_protocol!r}")
        self.split = split
        self.train = train
        self.image_size = image_size
        self.resize = resize
        self.seed = seed
        self.eval_protocol = eval_protocol
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

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        index = int(index)
        image = load_rgb(self.split.image_paths[index], index)
        if self.train:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, index))
            tensor = self.transform(image, generator)
        else:
            tensor = self.transform(image)
        return tensor, int(self.split.labels[index]), index

    def eval_boxes(self, index: int) -> np.ndarray:
        """(K, 4) float32 ground-truth boxes of sample ``index`` in the evaluated image's pixels."""
        width, height = (int(v) for v in self.split.sizes[index])
        boxes = self.split.boxes[index]
        if self.eval_protocol == "bas":
            return bas_boxes(boxes, width, height, self.resize, self.image_size)
        return resize_boxes(boxes, width, height, self.image_size)


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
    Persistent workers off; default collate gives ``(images (B, 3, S, S), labels (B,), indices (B,))``.
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
    )
