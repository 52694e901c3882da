"""The DALI loader: one DALI pipeline per epoch over this rank's sample list, batches as torch tensors.

Each epoch the host fixes the list of samples this rank reads (``SampleLoader.epoch_indices``:
the training permutation of ``(seed, epoch)``, or this rank's block of the evaluation split) and
builds a pipeline that reads exactly those files in that order. The reader pads the last batch
by repeating its last sample; those repeats are cut off here, so every listed sample is yielded
exactly once, and the indices DALI returns are checked against the list batch by batch, so a
label can never be paired with another sample's image. Training parameters (crop, flip) are
drawn on the host exactly as the torch path draws them and fed to DALI per iteration.

When DALI fails on a batch (a file that does not decode), the files of that batch and of those
in flight are decoded on the host to find the culprit (with GPU decoding, a file nvJPEG refuses
though the host decodes it is found by reading the suspects in halves); the error names it, or, with
``skip_bad_images``, the culprit is counted and left out and the epoch goes on from that batch
with a fresh pipeline.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from .dali_files import DALI_UNDECODABLE, describe, undecodable
from .dali_pipelines import build_pipeline, crop_window
from .datasets import SampleLoader, WSOLDataset
from .records import ImageReadError

PREFETCH = 2  # batches DALI prepares ahead of the one being consumed


class OutOfStepError(RuntimeError):
    """DALI returned other samples than the host listed (a bug, never an input problem)."""


def refill(samples: np.ndarray, due: int, good: list) -> np.ndarray:
    """``samples`` topped up to ``due`` with ``good`` indices (cycled): training batches stay
    full and as many as before a bad image was left out."""
    missing = due - len(samples)
    if missing <= 0 or not good:
        return samples
    return np.concatenate([samples, np.resize(np.asarray(good, dtype=np.int64), missing)])


class DaliLoader(SampleLoader):
    """Batches ``(images (B, 3, S, S) float32, labels (B,) int64, indices (B,) int64)`` of a
    ``WSOLDataset`` through DALI with ``workers`` threads. ``device`` CUDA: nvJPEG decoding
    (``"mixed"``) and images on that GPU; else CPU mode (``device_id=None``) and CPU tensors.
    Labels and indices are always CPU tensors (labels looked up on the host by index)."""

    undecodable_formats = DALI_UNDECODABLE

    def __init__(self, dataset: WSOLDataset, batch_size: int, workers: int = 2, device: str = "cpu",
                 **options) -> None:
        if not isinstance(dataset, WSOLDataset):
            raise TypeError(f"the DALI loader reads WSOLDataset transforms only, got {type(dataset).__name__}; "
                            "use loader='torch' for other datasets")
        super().__init__(dataset, batch_size, **options)
        self.num_threads = max(1, int(workers))
        self.device = torch.device(device)
        self.decoder_device = "mixed" if self.device.type == "cuda" else "cpu"

    def __str__(self) -> str:
        return f"DALI, {self.decoder_device} decoding, {self.num_threads} threads"

    @property
    def phase(self) -> str:
        if not self.dataset.train:
            return "evaluation"
        return "bas_train" if self.dataset.train_crop == "bas" else "resized_crop_train"

    def batch_params(self, indices: np.ndarray) -> tuple[np.ndarray, ...]:
        """The host-drawn training parameters of samples ``indices`` (B,) this epoch, one array per
        ``external_source`` output as the graph takes them: bas_train ``(roi start (B, 2) float32,
        roi end (B, 2) float32, mirror (B,) int32)``; resized_crop_train ``(width, height, x, y
        (B,) int64, mirror (B,) int32)``."""
        data = self.dataset
        *crop, flip = data.augmentation(indices)
        if self.phase == "bas_train":
            return (*crop_window(*crop, data.image_size, data.resize), flip.astype(np.int32))
        return (*crop, flip.astype(np.int32))

    def params_source(self, samples: np.ndarray):
        """``external_source`` callback: parameters of the samples of iteration ``info.iteration``,
        following the reader through its padded last batch and its wrap to the next pass. The
        whole epoch's parameters are drawn here at once; a batch is then a slice of each array."""
        batch, count = self.batch_size, len(samples)
        padded = -(-count // batch) * batch  # the reader pads the last batch whatever drop_last says
        columns = self.batch_params(np.concatenate([samples, samples[-1:]]))  # + the padding sample
        offsets = np.arange(batch)

        def source(info):
            start = info.iteration * batch % padded
            if start + batch <= count:
                return tuple(column[start:start + batch] for column in columns)
            positions = np.minimum(start + offsets, count)
            return tuple(column[positions] for column in columns)

        return source

    def build(self, samples: np.ndarray):
        """A built pipeline reading ``samples`` in order (GPU decoding falls back to the CPU, loudly)."""
        data = self.dataset
        resize = data.resize if data.eval_protocol == "bas" or data.train else data.image_size
        arguments = dict(files=data.split.image_paths.strings(samples), indices=samples.tolist(),
                         image_size=data.image_size, resize=resize, batch_size=self.batch_size,
                         num_threads=self.num_threads, prefetch=PREFETCH,
                         params_source=None if self.phase == "evaluation" else self.params_source(samples),
                         layout="HWC" if self.channels_last else "CHW")
        if self.decoder_device == "mixed":
            try:
                device_id = self.device.index if self.device.index is not None else torch.cuda.current_device()
                return build_pipeline(self.phase, decoder_device="mixed", device_id=device_id, **arguments)
            except (RuntimeError, AssertionError) as error:
                warnings.warn(f"DALI GPU decoding (device='mixed') is unavailable on {self.device}: {error}; "
                              "decoding on the CPU instead", RuntimeWarning, stacklevel=2)
                self.decoder_device = "cpu"
        return build_pipeline(self.phase, decoder_device="cpu", device_id=None, **arguments)

    def read_batch(self, pipeline, expected: np.ndarray):
        """The next batch of ``pipeline``, cut to the ``expected`` samples and checked against them."""
        from nvidia.dali.plugin.pytorch import feed_ndarray

        images, indices = pipeline.run()
        indices = np.asarray(indices.as_tensor()).reshape(-1).astype(np.int64)[:len(expected)]
        if not np.array_equal(indices, expected):
            raise OutOfStepError(f"DALI returned samples {indices.tolist()} where {expected.tolist()} were due")
        on_gpu = self.decoder_device == "mixed"
        size = self.dataset.image_size
        shape = (self.batch_size, size, size, 3) if self.channels_last else (self.batch_size, 3, size, size)
        out = torch.empty(shape, dtype=torch.float32, device=self.device if on_gpu else "cpu")
        feed_ndarray(images.as_tensor(), out, cuda_stream=torch.cuda.current_stream(self.device) if on_gpu else None)
        if self.channels_last:  # (B, S, S, 3) -> (B, 3, S, S) in channels_last memory, no copy
            out = out.permute(0, 3, 1, 2)
        labels = torch.from_numpy(self.dataset.split.labels[indices])
        return out[:len(expected)], labels, torch.from_numpy(indices)

    def culprits(self, samples: np.ndarray, first: int, error: RuntimeError) -> list:
        """The bad files among the batch that failed at ``samples[first]`` and the batches in flight."""
        suspects = samples[first:first + (PREFETCH + 1) * self.batch_size]
        found = undecodable(self.dataset.split.image_paths, suspects, str(error))
        if not found and self.decoder_device == "mixed":  # nvJPEG may refuse what the host decodes
            paths = self.dataset.split.image_paths
            found = [(index, paths[index], f"decodes on the host but fails on the GPU: {problem}")
                     for index, problem in self.failing_alone(suspects)]
        if not found:
            files = ", ".join(str(self.dataset.split.image_paths[i]) for i in suspects[:self.batch_size])
            raise RuntimeError(f"DALI failed on the batch of {files}; no file of it fails to decode on the "
                               f"host: {error}") from error
        if not self.skip_bad_images:
            raise ImageReadError(f"{describe(found)} (pass --skip-bad-images to leave such files out)") from error
        return found

    def failing_alone(self, samples: np.ndarray) -> list[tuple[int, str]]:
        """``(index, error)`` of the samples that fail when read in pipelines of their own:
        read them all, and halve a group that fails until the failing files stand alone."""
        try:
            pipeline = self.build(samples)
            for start in range(0, len(samples), self.batch_size):
                self.read_batch(pipeline, samples[start:start + self.batch_size])
        except OutOfStepError:
            raise
        except RuntimeError as error:
            if len(samples) == 1:
                return [(int(samples[0]), str(error))]
            half = len(samples) // 2
            return self.failing_alone(samples[:half]) + self.failing_alone(samples[half:])
        return []

    def __iter__(self):
        samples = self.epoch_indices()
        batch = self.batch_size
        while len(samples):
            pipeline = self.build(samples)
            for step in range(self.batch_count(len(samples))):
                expected = samples[step * batch:(step + 1) * batch]
                try:
                    result = self.read_batch(pipeline, expected)
                except OutOfStepError:
                    raise
                except RuntimeError as error:
                    found = self.culprits(samples, step * batch, error)
                    self.record_skipped(found)
                    bad = {index for index, _, _ in self.skipped}
                    due = (self.batch_count(len(samples)) - step) * batch  # what the batches left held
                    samples = np.array([i for i in samples[step * batch:] if i not in bad], dtype=np.int64)
                    if self.drop_last:  # training: keep the epoch's step count, the same on every rank
                        samples = refill(samples, due, [i for i in self.epoch_indices() if i not in bad])
                    break
                yield result
            else:
                return
