"""Image and box transforms of the two evaluation protocols (METHOD.md §6–7).

Image transforms take a PIL image and return its (3, S, S) uint8 pixels (``pixels``) or those
normalized with the ImageNet mean/std as float32 (calling the transform; ``normalize_pixels``). The training transform takes its crop and flip as arguments, drawn by
``augmentation.bas_crop_params`` from (seed, epoch, index).
Box transforms act on (K, 4) arrays of ``x0, y0, x1, y1`` in original pixel coordinates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

from ..config import DataConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _check_sizes(image_size: int, resize: int) -> None:
    if image_size < 1 or resize < image_size:
        raise ValueError(f"need 1 <= image_size <= resize, got image_size={image_size}, resize={resize}")


def _resize_square(image: Image.Image, side: int) -> Image.Image:
    """Resize to (side, side), aspect ratio not kept, bilinear with antialiasing."""
    return TF.resize(image, [side, side], interpolation=InterpolationMode.BILINEAR, antialias=True)


def normalize_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (..., 3, H, W) -> float32 ``(x / 255 - mean) / std`` per channel, on their
    device and in their memory layout. torchvision's ``to_tensor`` + ``normalize`` ops in their
    order: bit-identical to them."""
    mean = torch.tensor(IMAGENET_MEAN, device=pixels.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=pixels.device).view(3, 1, 1)
    return pixels.float().div(255).sub_(mean).div_(std)


@dataclass(frozen=True)
class TrainTransform:
    """Resize (resize, resize) -> random crop image_size -> random horizontal flip -> normalize.

    ``transform.pixels(image, top, left, flip) -> (3, image_size, image_size) uint8``;
    ``transform(image, top, left, flip)``: the same, normalized (float32).
    """

    image_size: int = DataConfig.image_size
    resize: int = DataConfig.resize

    def __post_init__(self) -> None:
        _check_sizes(self.image_size, self.resize)

    def pixels(self, image: Image.Image, top: int, left: int, flip: bool) -> torch.Tensor:
        if not (0 <= top <= self.resize - self.image_size and 0 <= left <= self.resize - self.image_size):
            raise ValueError(f"crop at (top {top}, left {left}) leaves the {self.resize}-px resized image")
        image = TF.crop(_resize_square(image, self.resize), top, left, self.image_size, self.image_size)
        if flip:
            image = TF.hflip(image)
        return TF.pil_to_tensor(image)

    def __call__(self, image: Image.Image, top: int, left: int, flip: bool) -> torch.Tensor:
        return normalize_pixels(self.pixels(image, top, left, flip))


@dataclass(frozen=True)
class EvalTransform:
    """Resize (resize, resize) -> center crop image_size -> normalize (BAS protocol).

    With ``resize == image_size`` this is the wsolevaluation resize-only transform.
    ``transform.pixels(image) -> (3, image_size, image_size) uint8``; ``transform(image)``: the
    same, normalized (float32).
    """

    image_size: int = DataConfig.image_size
    resize: int = DataConfig.resize

    def __post_init__(self) -> None:
        _check_sizes(self.image_size, self.resize)

    def pixels(self, image: Image.Image) -> torch.Tensor:
        image = _resize_square(image, self.resize)
        offset = center_crop_offset(self.resize, self.image_size)
        return TF.pil_to_tensor(TF.crop(image, offset, offset, self.image_size, self.image_size))

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return normalize_pixels(self.pixels(image))


def train_transform(image_size: int = DataConfig.image_size, resize: int = DataConfig.resize) -> TrainTransform:
    """BAS training augmentation; call as ``transform(pil_image, top, left, flip)``."""
    return TrainTransform(image_size, resize)


def eval_transform(image_size: int = DataConfig.image_size, resize: int = DataConfig.resize) -> EvalTransform:
    """BAS test transform: resize to (resize, resize), center crop ``image_size``."""
    return EvalTransform(image_size, resize)


def resize_only_transform(image_size: int = DataConfig.image_size) -> EvalTransform:
    """wsolevaluation test transform: resize to (image_size, image_size), no crop."""
    return EvalTransform(image_size, image_size)


def _check_boxes(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (K, 4), got {boxes.shape}")
    if width <= 0 or height <= 0:
        raise ValueError(f"image width and height must be positive, got {width}x{height}")
    return boxes


def center_crop_offset(resize: int, crop: int) -> int:
    """Top/left offset of a ``crop`` center crop in a ``resize`` image, as torchvision computes it
    (``(resize - crop) / 2`` whenever that is a whole number, as for 256/224)."""
    return int(round((resize - crop) / 2.0))


def bas_boxes(boxes: np.ndarray, width: float, height: float, resize: int = DataConfig.resize,
              crop: int = DataConfig.image_size) -> np.ndarray:
    """Boxes under the BAS test transform: ``clip(x * resize / W, off, off + crop) - off`` with
    ``off = center_crop_offset(resize, crop)`` (16 for 256/224), likewise with H for y.

    boxes: (K, 4) ``x0, y0, x1, y1`` in original pixels -> (K, 4) float32 in crop pixels.
    """
    boxes = _check_boxes(boxes, width, height)
    offset = center_crop_offset(resize, crop)
    scaled = boxes * resize / np.array([width, height, width, height], dtype=np.float64)
    return (np.clip(scaled, offset, offset + crop) - offset).astype(np.float32)


def resize_boxes(boxes: np.ndarray, width: float, height: float, size: int = DataConfig.image_size) -> np.ndarray:
    """Boxes under the wsolevaluation transform: ``int(x * size / W)`` (truncation, as Python's
    ``int``), likewise with H for y.

    boxes: (K, 4) ``x0, y0, x1, y1`` in original pixels -> (K, 4) float32 holding whole numbers.
    """
    boxes = _check_boxes(boxes, width, height)
    scaled = boxes * size / np.array([width, height, width, height], dtype=np.float64)
    return np.trunc(scaled).astype(np.float32)
