"""Class-wise mean foreground maps (METHOD.md §4): one forward pass of the early-stage model in
eval mode over the training set (test transform), per-class sums and counts, divide."""
from dataclasses import dataclass

import torch

from . import ops


@torch.no_grad()
def class_mean_maps(model, loader, num_classes: int, device: torch.device | str = "cpu",
                    progress=None, reduce=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ground-truth-class foreground map per class.

    ``loader`` yields batches whose first two items are images (B, 3, H, W) and labels (B,).
    Returns ``maps`` (C, H/8, W/8) float32 (zero for a class without images) and ``counts`` (C,)
    int64. ``progress`` is an optional callable taking the number of images just processed.
    ``reduce``: an in-place sum over processes (e.g. ``collectives.all_reduce_sum_``) applied to
    the per-class sums and counts before dividing, when each process read a shard of the data.
    """
    was_training = model.training
    model.eval()
    sums = counts = None
    try:
        for batch in loader:
            images, labels = batch[0].to(device), batch[1].to(device)
            fg = model(images, labels, background=False).fg_map[:, 0]
            if sums is None:
                sums = torch.zeros(num_classes, *fg.shape[1:], dtype=torch.float32, device=device)
                counts = torch.zeros(num_classes, dtype=torch.int64, device=device)
            ops.accumulate_class_sums(sums, counts, fg, labels)
            if progress is not None:
                progress(len(labels))
    finally:
        model.train(was_training)
    if sums is None:
        raise ValueError("class_mean_maps: the loader yielded no batch")
    if reduce is not None:
        reduce(sums)
        reduce(counts)
    maps = sums / counts.clamp(min=1).to(sums.dtype).view(-1, 1, 1)
    return maps, counts


@dataclass
class MeanMaps:
    """Fixed late-stage target: ``maps`` (C, h, w) float32 and ``counts`` (C,) int64."""

    maps: torch.Tensor
    counts: torch.Tensor

    @property
    def empty_classes(self) -> list[int]:
        """Classes that had no training image (their map is zero)."""
        return torch.nonzero(self.counts == 0).flatten().tolist()

    def to_state(self) -> dict:
        """``{"maps", "counts"}`` on the CPU, as a checkpoint stores them."""
        return {"maps": self.maps.cpu(), "counts": self.counts.cpu()}

    @classmethod
    def from_state(cls, state: dict) -> "MeanMaps":
        """Inverse of ``to_state``."""
        return cls(state["maps"], state["counts"])
