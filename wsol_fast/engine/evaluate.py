"""Evaluation at a fixed threshold (BAS protocol): classification from the class scores, the
localization map of the ground-truth class resized to the input, normalized, thresholded, the
largest 8-connected component's box, IoU with the "+1" convention against the image's boxes."""
import torch
import torch.nn.functional as F

from .. import metrics
from ..data import build_loader
from ..ops import evaluation as eval_ops

METHODS = ("bas", "cam")


@torch.no_grad()
def localization_maps(model, images: torch.Tensor, labels: torch.Tensor, method: str):
    """Class scores (B, C) and the ground-truth class's localization map resized to the input,
    (B, H, W) float32: the foreground map for BAS, the class feature map F[y] for CAM."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    if method == "cam":
        out = model(images)
        maps = out.class_maps[torch.arange(len(labels)), labels].unsqueeze(1)
    else:
        out = model(images, labels, background=False)
        maps = out.fg_map
    maps = F.interpolate(maps.float(), size=images.shape[-2:], mode="bilinear", align_corners=False)
    return out.score1.float(), maps[:, 0]


@torch.no_grad()
def evaluate(model, dataset, method: str = "bas", threshold: float = 0.5, norm: str = "minmax",
             batch_size: int = 64, device: str = "cpu", workers: int = 0) -> dict:
    """Top-1 / Top-5 classification, GT-known, Top-1 and Top-5 localization (%) over ``dataset``
    (an evaluation-mode ``WSOLDataset``), per-image and per-class means."""
    model.eval().to(device)
    num_classes = dataset.split.num_classes
    cls_counts = metrics.ClassificationCounts(num_classes)
    loc_counts = metrics.LocalizationCounts(num_classes)
    loader = build_loader(dataset, batch_size, shuffle=False, num_workers=workers)
    for images, labels, indices in loader:
        scores, maps = localization_maps(model, images.to(device), labels.to(device), method)
        boxes = eval_ops.largest_component_boxes(eval_ops.normalize(maps, norm), [threshold], empty="full")
        gt_boxes = [torch.from_numpy(dataset.eval_boxes(int(i))) for i in indices]
        ious = metrics.box_iou(boxes[:, 0].cpu().float(), gt_boxes)
        top1, top5 = metrics.topk_correct(scores.cpu(), labels)
        cls_counts.update(scores.cpu(), labels)
        loc_counts.update(ious, labels, top1, top5)
    return {**cls_counts.summary(), **loc_counts.summary()}
