"""The loader factory: DALI (``dali_loader.DaliLoader``) or the torch DataLoader
(``datasets.TorchLoader``), both yielding the same batches for the same seed (up to resize
interpolation) in the same order, from the same per-rank sample lists. The one module that knows
both backends.
"""
from __future__ import annotations

import warnings

from torch.utils.data import Dataset

from ..config import LOADERS
from .datasets import SampleLoader, TorchLoader


def make_loader(dataset: Dataset, batch_size: int, loader: str = "dali", shuffle: bool = False,
                drop_last: bool = False, workers: int = 2, device: str = "cpu", shard_id: int = 0,
                num_shards: int = 1, skip_bad_images: bool = False, channels_last: bool = False) -> SampleLoader:
    """The loader of ``dataset`` (a WSOLDataset; the torch path takes any dataset with a ``split``).

    ``loader="dali"``: DALI with ``workers`` threads, decoding on the GPU when ``device`` is CUDA;
    when DALI is not importable it says so (RuntimeWarning) and uses the torch path.
    ``loader="torch"``: DataLoader with ``workers`` processes. ``shuffle``: training order
    (a function of ``(dataset.seed, epoch)``); ``shard_id``/``num_shards``: this rank's part;
    ``channels_last``: images in channels_last memory.
    """
    if loader not in LOADERS:
        raise ValueError(f"loader must be one of {LOADERS}, got {loader!r}")
    options = dict(shuffle=shuffle, drop_last=drop_last, shard_id=shard_id, num_shards=num_shards,
                   skip_bad_images=skip_bad_images, channels_last=channels_last)
    if loader == "dali":
        from .dali_pipelines import dali_import_error

        error = dali_import_error()
        if error is None:
            from .dali_loader import DaliLoader

            return DaliLoader(dataset, batch_size, workers=workers, device=device, **options)
        warnings.warn(f"loader 'dali': NVIDIA DALI is not importable ({error}); loading with the torch "
                      "DataLoader instead (pip install nvidia-dali-cuda130, or pass --loader torch)",
                      RuntimeWarning, stacklevel=2)
    return TorchLoader(dataset, batch_size, workers=workers, device=device, **options)
