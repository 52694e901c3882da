"""Evaluation (METHOD.md §5-6), in two protocols, from counts that simply add up over batches.

* **BAS protocol**: resize 256 -> center crop 224 (scaled for other sizes), boxes clipped the same
  way; classification top-1/top-5 (single crop, or the ten-crop softmax average); the chosen
  class's localization map resized to the input, normalized, cut at a fixed threshold (strict
  ``>``), the largest 8-connected component's box, IoU with the "+1" convention > 0.5.
* **wsolevaluation protocol**: resize to the input size, no crop; the same maps swept over
  thresholds; MaxBoxAcc (largest component) and MaxBoxAccV2 (all components, δ ∈ {0.3, 0.5, 0.7}).
* **Mask splits** (wsolevaluation OpenImages, ``split.masks``): whatever the protocol, resize to
  the input size, no crop; classification top-1/top-5 and PxAP of the normalized maps against
  the masks read at the input size (``metrics.PxAPCounts``); no boxes, so no box metrics.
"""
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import collectives, metrics
from ..config import METHODS, DataConfig
from ..data import TenCropDataset, WSOLDataset, load_masks, make_loader
from ..ops import evaluation as eval_ops
from . import distributed

PROTOCOLS = ("bas", "maxboxacc", "both")
SWEEP_NORMS = ("minmax", "percentile:90", "percentile:95", "percentile:97", "percentile:99",
               "percentile:99.5", "percentile:100")


@dataclass
class EvalSettings:
    """How maps become boxes. ``map_class``: ``gt``, ``top1``, ``topk:K`` or ``all``."""

    method: str = "bas"
    norm: str = "minmax"
    threshold: float = 0.5
    map_class: str = "gt"
    protocol: str = "bas"
    ten_crop: bool = False
    sweep_step: float = metrics.THRESHOLD_STEP  # threshold spacing of the MaxBoxAcc sweep
    box_rule: str = metrics.BOX_RULES[0]  # MaxBoxAcc boxes: largest component, or wsolevaluation's contours

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose from {METHODS}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; choose from {PROTOCOLS}")
        if self.box_rule not in metrics.BOX_RULES:
            raise ValueError(f"unknown box rule {self.box_rule!r}; choose from {metrics.BOX_RULES}")
        parse_map_class(self.map_class)
        eval_ops.normalize(torch.ones(1, 1, 1), self.norm)  # validates the spec


def parse_map_class(spec: str) -> int | None:
    """``gt`` -> None, ``top1`` -> 1, ``topk:K`` -> K, ``all`` -> 0 (every class)."""
    if spec == "gt":
        return None
    if spec == "top1":
        return 1
    if spec == "all":
        return 0
    name, _, k = spec.partition(":")
    if name == "topk" and k.isdigit() and int(k) > 0:
        return int(k)
    raise ValueError(f"map class {spec!r}: expected gt, top1, topk:K or all")


@torch.no_grad()
def localization_maps(model, images: torch.Tensor, labels: torch.Tensor, method: str = "bas",
                      map_class: str = "gt"):
    """Class scores (B, C) and localization maps resized to the input, (B, H, W) float32: the
    generator's maps (BAS) or the class feature maps F (CAM) of the ground-truth class, the
    top-1 class, the mean over the top-k predicted classes, or the mean over all classes."""
    k = parse_map_class(map_class)
    x4 = model.backbone(images)
    class_maps = model.classifier(x4)
    scores = class_maps.mean(dim=(2, 3)).float()
    rows = torch.arange(len(images), device=images.device)
    if k is None and method == "bas":
        maps = torch.sigmoid(model.class_generator_logits(x4, labels))
    else:
        all_maps = class_maps if method == "cam" else model.generator_maps(x4)
        if k is None:
            maps = all_maps[rows, labels].unsqueeze(1)
        elif k == 0:
            maps = all_maps.mean(dim=1, keepdim=True)
        else:
            top = scores.topk(min(k, scores.shape[1]), dim=1).indices
            maps = torch.stack([all_maps[rows, top[:, j]] for j in range(top.shape[1])], 1).mean(1, keepdim=True)
    maps = F.interpolate(maps.float(), size=images.shape[-2:], mode="bilinear", align_corners=False)
    return scores, maps[:, 0]


@torch.no_grad()
def ten_crop_scores(model, crops: torch.Tensor) -> torch.Tensor:
    """crops (B, 10, 3, S, S) -> (B, C) softmax averaged over the crops."""
    batch = crops.shape[0]
    scores = model(crops.flatten(0, 1)).score1.float().softmax(dim=1)
    return scores.view(batch, 10, -1).mean(dim=1)


def _shard() -> dict:
    """This process's part of an evaluation split (all of it alone): every image exactly once."""
    return dict(shard_id=collectives.rank(), num_shards=collectives.world_size())


def _all_reduce_counts(*counts) -> None:
    """Sum metric counts over the processes, so every one holds the whole split's counts."""
    for accumulator in counts:
        state = accumulator.state_dict()
        accumulator.load_state_dict({name: collectives.all_reduce_sum_(value.to(distributed.device())).cpu()
                                     for name, value in state.items()} if collectives.world_size() > 1 else state)


def _ground_truth(dataset: WSOLDataset, indices) -> list[torch.Tensor]:
    return [torch.from_numpy(dataset.eval_boxes(int(i))) for i in indices]


def _ten_crop_batch(crops, indices: torch.Tensor) -> torch.Tensor:
    """The next ten-crop batch, which must hold the samples ``indices`` of the main loader."""
    batch, _, crop_indices = next(crops)
    if not torch.equal(crop_indices.cpu(), indices.cpu()):
        raise ValueError("ten-crop batches out of step with the main loader (an image skipped by one "
                         "loader only): evaluate with --loader torch")
    return batch


@torch.no_grad()
def evaluate_bas_protocol(model, dataset: WSOLDataset, settings: EvalSettings, batch_size: int = 64,
                          device: str = "cpu", workers: int = 0, loader: str = "dali",
                          skip_bad_images: bool = False) -> dict:
    """Top-1/Top-5 classification and Top-1/Top-5/GT-known localization (%), per image and
    per class, at ``settings.threshold`` on ``dataset`` (BAS eval protocol). ``loader``:
    "dali" or "torch" (the ten crops always come from the torch DataLoader)."""
    model.eval().to(device)
    num_classes = dataset.split.num_classes
    cls_counts = metrics.ClassificationCounts(num_classes)
    loc_counts = metrics.LocalizationCounts(num_classes)
    options = dict(workers=workers, device=device, skip_bad_images=skip_bad_images, **_shard())
    crops = None
    if settings.ten_crop:
        crops = iter(make_loader(TenCropDataset(dataset.split, dataset.image_size, dataset.resize),
                                 batch_size, loader="torch", **options))
    batches = make_loader(dataset, batch_size, loader=loader, **options)
    for images, labels, indices in batches:
        labels = labels.to(device)
        scores, maps = localization_maps(model, images.to(device), labels, settings.method, settings.map_class)
        if crops is not None:
            scores = ten_crop_scores(model, _ten_crop_batch(crops, indices).to(device))
        boxes = eval_ops.largest_component_boxes(eval_ops.normalize(maps, settings.norm),
                                                 [settings.threshold], empty="full")
        ious = metrics.box_iou(boxes[:, 0].cpu(), _ground_truth(dataset, indices))
        top1, top5 = metrics.topk_correct(scores.cpu(), labels.cpu())
        cls_counts.update(scores.cpu(), labels.cpu())
        loc_counts.update(ious, labels.cpu(), top1, top5)
    _all_reduce_counts(cls_counts, loc_counts)
    return {**cls_counts.summary(), **loc_counts.summary(), **_scored(int(cls_counts.state["images"].sum()), batches)}


@torch.no_grad()
def evaluate_maxboxacc(model, dataset: WSOLDataset, settings: EvalSettings, batch_size: int = 64,
                       device: str = "cpu", workers: int = 0, loader: str = "dali",
                       skip_bad_images: bool = False) -> dict:
    """MaxBoxAcc and MaxBoxAccV2 (%) with their best thresholds on ``dataset`` (which should use
    the wsolevaluation transform: ``eval_protocol="wsolevaluation"``)."""
    model.eval().to(device)
    counts = metrics.MaxBoxAccCounts(metrics.default_thresholds(settings.sweep_step))
    batches = make_loader(dataset, batch_size, loader=loader, workers=workers, device=device,
                          skip_bad_images=skip_bad_images, **_shard())
    for images, labels, indices in batches:
        _, maps = localization_maps(model, images.to(device), labels.to(device), settings.method,
                                    settings.map_class)
        largest, every = metrics.threshold_sweep_ious(eval_ops.normalize(maps, settings.norm),
                                                      _ground_truth(dataset, indices), counts.thresholds,
                                                      box_rule=settings.box_rule)
        counts.update(largest, every)
    _all_reduce_counts(counts)
    return {**counts.summary(), **_scored(int(counts.state["images"]), batches)}


def _ground_truth_masks(dataset: WSOLDataset, indices, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(masks, ignore), each (B, S, S) bool on ``device``: samples ``indices`` read at the input size."""
    masks, ignore = load_masks([dataset.split.masks[int(i)] for i in indices], dataset.image_size)
    return torch.from_numpy(masks).to(device), torch.from_numpy(ignore).to(device)


@torch.no_grad()
def evaluate_masks(model, dataset: WSOLDataset, settings: EvalSettings, norms=None, batch_size: int = 64,
                   device: str = "cpu", workers: int = 0, loader: str = "dali",
                   skip_bad_images: bool = False) -> dict:
    """Top-1/Top-5 classification and PxAP (%) on ``dataset``, a mask split under the
    wsolevaluation transform; ``norms`` given: PxAP of each of these normalizations instead
    (``pxap_by_norm``), from the same maps."""
    model.eval().to(device)
    sweep = norms is not None
    norms = list(norms) if sweep else [settings.norm]
    thresholds = metrics.default_thresholds(settings.sweep_step)
    cls_counts = metrics.ClassificationCounts(dataset.split.num_classes)
    pxap = {norm: metrics.PxAPCounts(thresholds) for norm in norms}
    batches = make_loader(dataset, batch_size, loader=loader, workers=workers, device=device,
                          skip_bad_images=skip_bad_images, **_shard())
    for images, labels, indices in batches:
        scores, maps = localization_maps(model, images.to(device), labels.to(device), settings.method,
                                         settings.map_class)
        masks, ignore = _ground_truth_masks(dataset, indices, maps.device)
        for norm, counts in pxap.items():
            counts.update(eval_ops.normalize(maps, norm), masks, ignore)
        cls_counts.update(scores.cpu(), labels.cpu())
    _all_reduce_counts(cls_counts, *pxap.values())
    result = {**cls_counts.summary(), **_scored(int(cls_counts.state["images"].sum()), batches)}
    if not sweep:
        return {**result, **pxap[settings.norm].summary()}
    return {**result, "pxap_by_norm": {norm: counts.summary()["pxap"] for norm, counts in pxap.items()}}


def _scored(images: int, batches) -> dict:
    """``images`` scored (all ranks) and the images this rank's loader ``batches`` left out."""
    return {"images": images, "skipped": [{"path": str(path), "problem": problem}
                                          for _, path, problem in batches.skipped]}


def evaluate(model, split, settings: EvalSettings, image_size: int = DataConfig.image_size, resize: int = DataConfig.resize,
             batch_size: int = 64, device: str = "cpu", workers: int = 0, loader: str = "dali",
             skip_bad_images: bool = False) -> dict:
    """Run the protocol(s) of ``settings`` on ``split`` (a mask split: ``evaluate_masks``); one flat
    dict of results, with the number of ``images`` scored and the ``skipped`` ones (left out by the
    reader or the loader)."""
    result = {"settings": asdict(settings)}
    skipped = [{"path": path, "problem": problem} for path, problem in split.skipped]
    options = dict(batch_size=batch_size, device=device, workers=workers, loader=loader,
                   skip_bad_images=skip_bad_images)
    if split.masks is not None:
        dataset = WSOLDataset(split, train=False, image_size=image_size, resize=resize, eval_protocol="wsolevaluation")
        result.update(evaluate_masks(model, dataset, settings, **options))
    else:
        if settings.protocol in ("bas", "both"):
            dataset = WSOLDataset(split, train=False, image_size=image_size, resize=resize)
            result.update(evaluate_bas_protocol(model, dataset, settings, **options))
        if settings.protocol in ("maxboxacc", "both"):
            dataset = WSOLDataset(split, train=False, image_size=image_size, resize=resize,
                                  eval_protocol="wsolevaluation")
            result.update(evaluate_maxboxacc(model, dataset, settings, **options))
    skipped += [row for row in result.pop("skipped") if row not in skipped]
    return {**result, "images_listed": result["images"] + len(skipped), "skipped": skipped}


def normalization_sweep_on_masks(model, split, settings: EvalSettings, norms=SWEEP_NORMS,
                                 image_size: int = DataConfig.image_size, resize: int = DataConfig.resize,
                                 **options) -> list[dict]:
    """PxAP (%) of every normalization on ``split`` (a mask validation split), one row each: PxAP
    needs no threshold, so the sweep of a mask split chooses the normalization only.
    ``options``: batch_size, device, workers, loader, skip_bad_images."""
    dataset = WSOLDataset(split, train=False, image_size=image_size, resize=resize, eval_protocol="wsolevaluation")
    result = evaluate_masks(model, dataset, settings, norms=norms, **options)
    return [{"norm": norm, "pxap": value} for norm, value in result["pxap_by_norm"].items()]


@torch.no_grad()
def threshold_sweep(model, split, settings: EvalSettings, norms=SWEEP_NORMS, thresholds=None,
                    image_size: int = DataConfig.image_size, resize: int = DataConfig.resize, batch_size: int = 64, device: str = "cpu",
                    workers: int = 0, loader: str = "dali", skip_bad_images: bool = False) -> list[dict]:
    """GT-known (%) of every (normalization, threshold) on ``split`` (a validation split), BAS
    protocol; one row per normalization with its best threshold and the whole curve."""
    thresholds = np.round(np.arange(0.05, 1.0, 0.05), 4) if thresholds is None else np.asarray(thresholds)
    model.eval().to(device)
    dataset = WSOLDataset(split, train=False, image_size=image_size, resize=resize)
    hits = {norm: torch.zeros(len(thresholds), dtype=torch.int64) for norm in norms}
    seen = 0
    batches = make_loader(dataset, batch_size, loader=loader, workers=workers, device=device,
                          skip_bad_images=skip_bad_images)
    for images, labels, indices in batches:
        _, maps = localization_maps(model, images.to(device), labels.to(device), settings.method,
                                    settings.map_class)
        gt = _ground_truth(dataset, indices)
        seen += len(indices)
        for norm in norms:
            boxes = eval_ops.largest_component_boxes(eval_ops.normalize(maps, norm), thresholds, empty="full")
            hits[norm] += (metrics.box_iou(boxes.cpu(), gt) > 0.5).sum(dim=0)
    rows = []
    for norm in norms:
        gt_known = 100.0 * hits[norm].double() / max(seen, 1)
        best = int(torch.argmax(gt_known))  # first maximum: the lowest threshold wins ties
        rows.append({"norm": norm, "best_threshold": float(thresholds[best]), "gt_known": float(gt_known[best]),
                     "curve": {f"{t:g}": float(v) for t, v in zip(thresholds, gt_known)}})
    return rows
