"""NVIDIA DALI graphs of the three loader phases: training, evaluation and the mean-map pass.

Every graph reads a host-chosen list of files in that order (``fn.readers.file`` with
``labels`` = dataset sample indices, ``pad_last_batch=True``: the last batch repeats the last
sample, and the loader drops those repeats), decodes on ``decoder_device`` ("cpu": libjpeg-turbo
in DALI's threads; "mixed": nvJPEG on the GPU, after which every operator runs on the GPU) and
returns ``(images (B, 3, S, S) float32 ImageNet-normalized, indices (B,) int32)`` ((B, S, S, 3)
with ``layout="HWC"``).
The random parts of training (crop position, flip, resized-crop box) are drawn on the host from
``(seed, epoch, index)`` exactly as the torch path draws them (``augmentation``), and are fed as
one array per batch through ``fn.external_source``; the graphs themselves hold no random operator.

Graphs:
- ``bas_train``: resize (R, R) -> crop S at the host's (top, left) -> flip -> normalize (one
  resize of the crop window, see ``_resize_square``).
- ``resized_crop_train``: ROI decoding of the host's relative box (``fn.decoders.image_slice``)
  -> resize (S, S) -> flip -> normalize.
- ``evaluation``: resize (R, R) -> crop S at ``center_crop_offset(R, S)`` -> normalize (idem); with
  R == S this is the wsolevaluation resize-only transform. The mean-map pass uses it too.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .augmentation import FIXED_POINT
from .transforms import IMAGENET_MEAN, IMAGENET_STD, center_crop_offset

DECODER_DEVICES = ("cpu", "mixed")
READER_NAME = "reader"


def dali_import_error() -> ImportError | None:
    """None when ``nvidia.dali`` imports, else the ImportError that says why not."""
    try:
        import nvidia.dali  # noqa: F401
    except ImportError as error:
        return error
    return None


def _normalize(images, layout: str, mirror=0):
    """HWC uint8 -> ``layout`` (CHW or HWC) float32, ``(x / 255 - mean) / std`` per channel,
    flipped where ``mirror``."""
    from nvidia.dali import fn, types

    return fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout=layout, mirror=mirror,
                                    mean=[255.0 * m for m in IMAGENET_MEAN], std=[255.0 * s for s in IMAGENET_STD])


def _resize_square(images, side: int, roi_start=(0.0, 0.0), roi_end=(1.0, 1.0)):
    """Resize to (side, side), aspect ratio not kept, linear with antialiasing.

    ``roi_start``/``roi_end`` (y, x), relative: resize only that window of the image. Resizing the
    window ``[off / R, (off + S) / R]`` to S gives the pixels of resizing the whole image to R and
    cropping S at ``off`` (bit for bit when off / R is exact in float32, as for R = 256; else a
    rare pixel rounds one level off) without computing the pixels the crop throws away.
    """
    from nvidia.dali import fn, types

    return fn.resize(images, resize_x=side, resize_y=side, interp_type=types.INTERP_LINEAR, antialias=True,
                     roi_start=roi_start, roi_end=roi_end, roi_relative=True)


def crop_window(top, left, crop: int, resize: int) -> tuple[np.ndarray, np.ndarray]:
    """Relative (y, x) ROI ``(start, end)`` (..., 2) float32 of the ``crop`` x ``crop`` windows at
    (top, left) of a (resize, resize) image; ``top``/``left`` ints or (N,) arrays."""
    top, left = np.asarray(top), np.asarray(left)
    start = np.stack([top / resize, left / resize], axis=-1)
    end = np.stack([(top + crop) / resize, (left + crop) / resize], axis=-1)
    return start.astype(np.float32), end.astype(np.float32)


def _reader(files: Sequence[str], indices: Sequence[int]):
    from nvidia.dali import fn

    return fn.readers.file(files=list(files), labels=[int(i) for i in indices], pad_last_batch=True,
                           random_shuffle=False, prefetch_queue_depth=2, name=READER_NAME)


def build_pipeline(
    phase: str,
    files: Sequence[str],
    indices: Sequence[int],
    image_size: int,
    resize: int,
    batch_size: int,
    num_threads: int,
    decoder_device: str = "cpu",
    device_id: int | None = None,
    params_source: Callable | None = None,
    prefetch: int = 2,
    layout: str = "CHW",
):
    """A built DALI pipeline of ``phase`` ("bas_train", "resized_crop_train" or "evaluation")
    over ``files`` (in that order) labelled with their dataset ``indices``.

    ``params_source(batch_info)`` (training phases) returns the host-drawn parameters of the
    samples of iteration ``batch_info.iteration``, one NumPy array per output for the batch:
    bas_train: ``(roi_start (B, 2) float32, roi_end (B, 2) float32, mirror (B,) int32)``, the crop
    window ``(top, left) / resize`` to ``(top + S, left + S) / resize``;
    resized_crop_train: ``(width, height, x, y (B,) int64 in 1/FIXED_POINT units, mirror (B,) int32)``.
    ``layout``: "CHW" images, or "HWC" (channels_last batches, no transposing copy in torch).
    ``decoder_device="mixed"`` needs ``device_id`` (a GPU); "cpu" needs ``device_id=None``.
    """
    from nvidia.dali import fn, pipeline_def
    from nvidia.dali import math as dmath

    if decoder_device not in DECODER_DEVICES:
        raise ValueError(f"decoder_device must be one of {DECODER_DEVICES}, got {decoder_device!r}")
    if (decoder_device == "mixed") != (device_id is not None):
        needed = "set" if decoder_device == "mixed" else "None"
        raise ValueError(f"decoder_device={decoder_device!r} needs device_id {needed}")
    if phase != "evaluation" and params_source is None:
        raise ValueError(f"phase {phase!r} needs a params_source")

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=device_id,
                  prefetch_queue_depth=prefetch, seed=0)  # no random operator; fixed all the same
    def bas_train():
        encoded, labels = _reader(files, indices)
        roi_start, roi_end, mirror = fn.external_source(source=params_source, num_outputs=3, batch=True,
                                                        batch_info=True)
        images = fn.decoders.image(encoded, device=decoder_device, adjust_orientation=False)
        return _normalize(_resize_square(images, image_size, roi_start, roi_end), layout, mirror), labels

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=device_id,
                  prefetch_queue_depth=prefetch, seed=0)  # no random operator; fixed all the same
    def resized_crop_train():
        encoded, labels = _reader(files, indices)
        rel_w, rel_h, rel_x, rel_y, mirror = fn.external_source(source=params_source, num_outputs=5,
                                                                batch=True, batch_info=True)
        shape = fn.peek_image_shape(encoded, adjust_orientation=False)  # (H, W, C) int64
        height, width = shape[0], shape[1]
        # Integer arithmetic, the same as datasets.resized_crop_box, so both paths cut equal pixels.
        crop_w = dmath.max(width * rel_w // FIXED_POINT, 1)
        crop_h = dmath.max(height * rel_h // FIXED_POINT, 1)
        left = (width - crop_w + 1) * rel_x // FIXED_POINT
        top = (height - crop_h + 1) * rel_y // FIXED_POINT
        images = fn.decoders.image_slice(encoded, fn.stack(left, top), fn.stack(crop_w, crop_h),
                                         axis_names="WH", normalized_anchor=False, normalized_shape=False,
                                         device=decoder_device, adjust_orientation=False)
        return _normalize(_resize_square(images, image_size), layout, mirror), labels

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=device_id,
                  prefetch_queue_depth=prefetch, seed=0)  # no random operator; fixed all the same
    def evaluation():
        encoded, labels = _reader(files, indices)
        images = fn.decoders.image(encoded, device=decoder_device, adjust_orientation=False)
        start, end = crop_window(center_crop_offset(resize, image_size), center_crop_offset(resize, image_size),
                                 image_size, resize)
        return _normalize(_resize_square(images, image_size, start.tolist(), end.tolist()), layout), labels

    graphs = {"bas_train": bas_train, "resized_crop_train": resized_crop_train, "evaluation": evaluation}
    if layout not in ("CHW", "HWC"):
        raise ValueError(f"layout must be CHW or HWC, got {layout!r}")
    if phase not in graphs:
        raise ValueError(f"unknown phase {phase!r}; choose one of {tuple(graphs)}")
    pipeline = graphs[phase]()
    pipeline.build()
    return pipeline
