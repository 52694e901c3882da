"""What BAS's background-suppression term sees: S_bg / S for a checkpoint under chosen masks.

The early-stage loss rewards a foreground map M whose removal, ``x4 * (1 - M)``, leaves the
background branch little of the true class's score: r = S_bg / S. If masking the ground-truth
object leaves much of S while some other mask (beside the object, or on the background) leaves
less, the objective's minimum is not on the object and BAS's maps drift off it. This probe
measures r on training images for the model's own maps and for masks built from the
ground-truth boxes (dilated by 0..3 feature cells), plus the two ends (nothing masked: r = 1;
everything masked: the floor that biases and BatchNorm leave), with the branch's BatchNorm on
batch statistics as in training (or running statistics with ``bn="running"``).
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .data import WSOLDataset, collate


@dataclass
class MaskProbe:
    """One mask's effect: mean r (r clipped at 5), median r, fraction of images with S_bg >= S
    (which the default ``zero-ge`` rule scores as 0) and the mask's mean area."""

    name: str
    mean_ratio: float
    median_ratio: float
    share_at_least_one: float
    area: float


def box_masks(dataset: WSOLDataset, indices: list[int], side: int) -> torch.Tensor:
    """(B, 1, side, side) float32: 1 inside any ground-truth box of each sample, on a side x side
    grid over the evaluated image (a cell is in if its centre is)."""
    centres = (torch.arange(side, dtype=torch.float32) + 0.5) * dataset.image_size / side
    masks = torch.zeros(len(indices), 1, side, side)
    for row, index in enumerate(indices):
        for x0, y0, x1, y1 in dataset.eval_boxes(index).tolist():
            inside_y = (centres >= y0) & (centres < y1)
            inside_x = (centres >= x0) & (centres < x1)
            masks[row, 0] = torch.maximum(masks[row, 0], (inside_y[:, None] & inside_x[None, :]).float())
    return masks


def dilate(masks: torch.Tensor, cells: int) -> torch.Tensor:
    """Grow (B, 1, h, w) binary masks by ``cells`` in every direction (square neighbourhood)."""
    return F.max_pool2d(masks, 2 * cells + 1, stride=1, padding=cells) if cells else masks


@torch.no_grad()
def probe_background(model, dataset: WSOLDataset, indices: list[int], bn: str = "batch") -> list[MaskProbe]:
    """r = S_bg / S (S: score1 at the label) of ``model`` on samples ``indices`` of ``dataset``
    (test transform) for each mask; ``bn``: "batch" (training's rule) or "running". The model's
    BatchNorm running statistics are restored afterwards."""
    if bn not in ("batch", "running"):
        raise ValueError(f"bn must be 'batch' or 'running', got {bn!r}")
    buffers = {name: buffer.clone() for name, buffer in model.named_buffers()}
    images, labels, _ = collate([dataset[i] for i in indices])
    model.train(bn == "batch")
    x4 = model.backbone(images)
    score = model.classifier(x4).mean(dim=(2, 3)).gather(1, labels[:, None]).squeeze(1)
    own = torch.sigmoid(model.class_generator_logits(x4, labels))
    boxes = box_masks(dataset, indices, x4.shape[-1])
    masks = [("model's foreground map", own), ("nothing", torch.zeros_like(own))]
    masks += [(f"boxes + {cells} cell{'s' if cells > 1 else ''}" if cells else "ground-truth boxes",
               dilate(boxes, cells)) for cells in range(4)]
    masks.append(("everything", torch.ones_like(own)))
    results = []
    for name, mask in masks:
        background = model.background_class_maps(x4 * (1 - mask)).mean(dim=(2, 3))
        ratio = background.gather(1, labels[:, None]).squeeze(1) / (score + 1e-8)
        results.append(MaskProbe(name, float(ratio.clamp(max=5).mean()), float(ratio.median()),
                                 float((ratio >= 1).float().mean()), float(mask.mean())))
    model.load_state_dict(buffers, strict=False)
    model.eval()
    return results
