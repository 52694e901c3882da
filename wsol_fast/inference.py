"""Inference with a trained checkpoint: the settings that turn its maps into boxes, resolved in
one place (``localization_settings``), and ``Localizer``, which applies them to image batches."""
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import TrainConfig, preset_of
from .engine.evaluate import EvalSettings, localization_maps
from .models.restore import model_from_checkpoint
from .ops import evaluation as eval_ops

UNLABELED_MAP_CLASS = "top1"  # the class whose map localizes an image without a label


def localization_settings(state: dict, config: TrainConfig, method: str | None = None, norm: str | None = None,
                          threshold: float | None = None, map_class: str = EvalSettings.map_class,
                          **evaluation) -> EvalSettings:
    """How a checkpoint (loaded ``state``, its ``config`` with any data overrides) localizes:
    each value given, else the one ``evaluate --sweep`` saved with the checkpoint, else the
    default: the trained method, min-max, the dataset preset's threshold for the method.
    ``evaluation``: the other ``EvalSettings`` fields (protocol, ten_crop, sweep_step, box_rule)."""
    saved = state.get("eval_settings", {})
    method = method or saved.get("method", config.loss.method)
    if threshold is None:
        threshold = saved.get("threshold", preset_of(config.data).thresholds[method])
    if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    return EvalSettings(method=method, norm=norm or saved.get("norm", EvalSettings.norm), threshold=float(threshold),
                        map_class=map_class, **evaluation)


@dataclass
class Localization:
    """One batch: ``probs`` (B, C) float32 softmax, ``maps`` (B, S, S) float32 normalized
    localization maps, ``boxes`` (B, 4) int64 in input pixels (exclusive maxima)."""

    probs: torch.Tensor
    maps: torch.Tensor
    boxes: torch.Tensor


class Localizer:
    """A checkpoint's model with the settings that turn its maps into boxes.

    ``norm`` / ``threshold``: see ``localization_settings``; ``map_class``: ``top1``, ``topk:K``,
    ``all``, or ``gt`` (then calls need labels).
    """

    def __init__(self, checkpoint: str | Path, norm: str | None = None, threshold: float | None = None,
                 map_class: str = UNLABELED_MAP_CLASS, device: str = "cpu"):
        self.checkpoint = Path(checkpoint)
        self.model, state = model_from_checkpoint(self.checkpoint)
        self.model.eval().to(device)
        self.device = device
        self.config = TrainConfig.from_dict(state["config"])
        self.run = str(state.get("run", self.checkpoint.parent.name))
        self.settings = localization_settings(state, self.config, norm=norm, threshold=threshold,
                                              map_class=map_class)

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    @property
    def title(self) -> str:
        """Run name, normalization and threshold, e.g. ``late (percentile:99, t=0.35)``."""
        return f"{self.run} ({self.settings.norm}, t={self.settings.threshold:g})"

    def check_classes(self, count: int, what: str) -> None:
        """Raise ValueError unless ``what`` (a split, a name list) has this model's class count."""
        if count != self.num_classes:
            raise ValueError(f"checkpoint {self.checkpoint} has {self.num_classes} classes, {what} has {count}")

    def __call__(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> Localization:
        """images (B, 3, S, S) normalized float32; labels (B,) int64, needed for map class ``gt``."""
        settings = self.settings
        if settings.map_class == "gt" and labels is None:
            raise ValueError("map class 'gt' needs labels; use top1, topk:K or all for unlabeled images")
        labels = None if labels is None else labels.to(self.device)
        scores, maps = localization_maps(self.model, images.to(self.device), labels, settings.method,
                                         settings.map_class)
        normalized = eval_ops.normalize(maps, settings.norm)
        boxes = eval_ops.largest_component_boxes(normalized, [settings.threshold], empty="full")[:, 0]
        return Localization(scores.softmax(dim=1).cpu(), normalized.cpu(), boxes.cpu())


def box_to_original(box, width: int, height: int, size: int) -> list[float]:
    """A box in the pixels of the (size, size) network input -> the (width, height) original's
    pixels (floats, 2 decimals); exclusive maxima stay exclusive."""
    x0, y0, x1, y1 = (float(v) for v in box)
    sx, sy = width / size, height / size
    return [round(x0 * sx, 2), round(y0 * sy, 2), round(x1 * sx, 2), round(y1 * sy, 2)]
