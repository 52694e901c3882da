"""IoU of boxes, "+1" convention: a box ``(x0, y0, x1, y1)`` covers ``(x1 - x0 + 1) * (y1 - y0 + 1)``
pixels. Plain PyTorch, shared by the threshold sweeps (``evaluation``) and the metrics."""
import torch


def _boxes(boxes, name: str, dims: tuple[int, ...]) -> torch.Tensor:
    tensor = torch.as_tensor(boxes)
    if tensor.ndim not in dims or tensor.shape[-1] != 4:
        shapes = " or ".join(f"{d}-D (..., 4)" for d in dims)
        raise ValueError(f"{name}: expected boxes of shape {shapes}, got {tuple(tensor.shape)}")
    tensor = tensor.to(torch.float64)
    inverted = (tensor[..., 2] < tensor[..., 0]) | (tensor[..., 3] < tensor[..., 1])
    if bool(inverted.any()):
        where = torch.nonzero(inverted)[0].tolist()
        raise ValueError(f"{name}: box at index {where} has x1 < x0 or y1 < y0: "
                         f"{tensor[tuple(where)].tolist()}")
    return tensor


def ground_truth_boxes(gt, gt_valid=None) -> tuple[torch.Tensor, torch.Tensor]:
    """GT boxes as padded (N, K, 4) float64 and validity (N, K) bool, from a padded tensor
    (with ``gt_valid``, default all valid) or a list of N tensors (K_i, 4). Every image needs a
    valid box."""
    if isinstance(gt, (list, tuple)):
        if gt_valid is not None:
            raise ValueError("gt_valid: only for padded (N, K, 4) ground truth, not for a list")
        per_image = [_boxes(boxes, f"gt[{i}]", (2,)) for i, boxes in enumerate(gt)]
        most = max((len(boxes) for boxes in per_image), default=0)
        padded = torch.zeros(len(per_image), most, 4, dtype=torch.float64)
        valid = torch.zeros(len(per_image), most, dtype=torch.bool)
        for i, boxes in enumerate(per_image):
            padded[i, :len(boxes)] = boxes
            valid[i, :len(boxes)] = True
    else:
        padded = _boxes(gt, "gt", (3,))
        valid = (torch.ones(padded.shape[:2], dtype=torch.bool) if gt_valid is None
                 else torch.as_tensor(gt_valid, dtype=torch.bool, device=padded.device))
        if valid.shape != padded.shape[:2]:
            raise ValueError(f"gt_valid: shape {tuple(valid.shape)} does not match "
                             f"gt {tuple(padded.shape)}")
    empty = ~valid.any(dim=1)
    if bool(empty.any()):
        missing = torch.nonzero(empty).flatten().tolist()[:10]
        raise ValueError(f"gt: image index(es) {missing} have no box")
    return padded, valid


def box_iou(pred, gt, gt_valid=None) -> torch.Tensor:
    """Best IoU ("+1" convention) of each predicted box over its image's GT boxes.
    pred (N, 4) or (N, T, 4); gt (N, K, 4) padded with ``gt_valid`` (N, K) bool, or a list of
    N tensors (K_i, 4) -> (N,) or (N, T) float64; boxes that do not overlap have IoU 0."""
    predicted = _boxes(pred, "pred", (2, 3))
    boxes, valid = ground_truth_boxes(gt, gt_valid)
    boxes, valid = boxes.to(predicted.device), valid.to(predicted.device)
    if boxes.shape[0] != predicted.shape[0]:
        raise ValueError(f"pred has {predicted.shape[0]} images but gt has {boxes.shape[0]}")
    if predicted.ndim == 3:
        boxes, valid = boxes.unsqueeze(1), valid.unsqueeze(1)
    p = predicted.unsqueeze(-2)  # (N, [T,] 1, 4) against (N, [1,] K, 4)

    def side(low: int, high: int) -> torch.Tensor:
        return (torch.minimum(p[..., high], boxes[..., high]) - torch.maximum(p[..., low], boxes[..., low])
                + 1).clamp(min=0)

    overlap = side(0, 2) * side(1, 3)
    area_p = (p[..., 2] - p[..., 0] + 1) * (p[..., 3] - p[..., 1] + 1)
    area_g = (boxes[..., 2] - boxes[..., 0] + 1) * (boxes[..., 3] - boxes[..., 1] + 1)
    iou = overlap / (area_p + area_g - overlap)
    return torch.where(valid, iou, -1.0).amax(dim=-1)


def max_iou_over_boxes(pred: list[torch.Tensor], gt, gt_valid=None) -> torch.Tensor:
    """Best IoU over all predicted boxes of each image (MaxBoxAccV2). pred: N tensors (K_b, 4);
    gt as in ``box_iou`` -> (N,) float64; 0 for an image without predicted boxes."""
    boxes, valid = ground_truth_boxes(gt, gt_valid)
    if len(pred) != boxes.shape[0]:
        raise ValueError(f"pred has {len(pred)} images but gt has {boxes.shape[0]}")
    counts = torch.tensor([len(b) for b in pred], dtype=torch.int64)
    best = torch.zeros(len(pred), dtype=torch.float64)
    if int(counts.sum()) == 0:
        return best
    owner = torch.repeat_interleave(torch.arange(len(pred)), counts)
    flat = torch.cat([torch.as_tensor(b).reshape(-1, 4).cpu() for b in pred])
    iou = box_iou(flat, boxes[owner], valid[owner])
    return best.scatter_reduce(0, owner, iou, "amax", include_self=True)


def valid_first(gt, gt_valid) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground truth as padded (N, K, 4) with each image's valid boxes first, and validity (N, K):
    the extension takes the first ``count`` boxes of each image."""
    padded, valid = ground_truth_boxes(gt, gt_valid)
    valid_first = torch.argsort((~valid).int(), dim=1, stable=True)
    return padded.gather(1, valid_first.unsqueeze(-1).expand(-1, -1, 4)), valid.gather(1, valid_first)
