"""Input checks of the training ops, written once: the reference (``training_reference``) and
the Triton kernels' entry points (``wsol_fast.kernels``) both call these, so both refuse bad
input with the same message. This module imports no Triton (the kernels add their own launch
checks: device, memory layout). Shapes are the ops' (``training_reference`` docstrings)."""
import torch

LABEL_DTYPES = (torch.int32, torch.int64)
COUNT_DTYPES = (torch.int32, torch.int64, torch.float32, torch.float64)


def check_floating(name: str, tensor: torch.Tensor) -> None:
    if not tensor.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {tensor.dtype}")


def check_shape(name: str, tensor: torch.Tensor, expected: tuple) -> None:
    """Raise unless ``tensor.shape`` matches ``expected`` (None entries match any size)."""
    shape = tuple(tensor.shape)
    if len(shape) != len(expected) or any(e is not None and s != e for s, e in zip(shape, expected)):
        wanted = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise ValueError(f"{name} has shape {shape}, expected {wanted}")


def check_same_device(**tensors: torch.Tensor) -> None:
    """Raise unless all named tensors live on one device."""
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        raise ValueError("inputs on different devices: " + ", ".join(f"{n} on {d}" for n, d in devices.items()))


def check_labels(labels: torch.Tensor, batch: int, num_classes: int) -> torch.Tensor:
    """Check labels (B,) int32/int64 in [0, num_classes); returns them contiguous.
    The range check is an asynchronous device assert: no host synchronization on CUDA."""
    if labels.dtype not in LABEL_DTYPES:
        raise TypeError(f"labels must be int32 or int64, got {labels.dtype}")
    check_shape("labels", labels, (batch,))
    in_range = ((labels >= 0) & (labels < num_classes)).all()
    torch._assert_async(in_range, f"labels out of range: every label must be in [0, {num_classes})")
    return labels.contiguous()


def check_foreground_epilogue(logits: torch.Tensor) -> None:
    """logits (B, 1, H, W) floating, H and W even (the 2x2 pool)."""
    check_floating("logits", logits)
    check_shape("logits", logits, (None, 1, None, None))
    height, width = logits.shape[2:]
    if height % 2 or width % 2:
        raise ValueError(f"logits has odd spatial size {height}x{width}; the 2x2 pool needs even H and W")


def _check_maps_and_one_channel(names: tuple[str, str], maps: torch.Tensor, single: torch.Tensor) -> None:
    """``maps`` (B, K, H, W) and ``single`` (B, 1, H, W), floating, on one device; ``names``
    name them in errors."""
    check_floating(names[0], maps)
    check_floating(names[1], single)
    check_same_device(**dict(zip(names, (maps, single))))
    check_shape(names[0], maps, (None, None, None, None))
    check_shape(names[1], single, (maps.shape[0], 1, maps.shape[2], maps.shape[3]))


def check_background_product(x4: torch.Tensor, fg: torch.Tensor) -> None:
    """x4 (B, K, H, W) and fg (B, 1, H, W), floating, on one device."""
    _check_maps_and_one_channel(("x4", "fg"), x4, fg)


def check_guided_score(class_maps: torch.Tensor, pooled: torch.Tensor) -> None:
    """class_maps (B, C, h, w) and pooled (B, 1, h, w), floating, on one device."""
    _check_maps_and_one_channel(("class_maps", "pooled"), class_maps, pooled)


def check_class_sums(sums: torch.Tensor, counts: torch.Tensor, maps: torch.Tensor,
                     labels: torch.Tensor) -> torch.Tensor:
    """sums (C, H, W) float32, counts (C,) of ``COUNT_DTYPES``, maps (B, H, W) floating,
    labels (B,) in [0, C), on one device; returns the labels contiguous."""
    check_floating("maps", maps)
    check_same_device(sums=sums, counts=counts, maps=maps, labels=labels)
    if sums.dtype != torch.float32:
        raise TypeError(f"sums must be a float32 tensor, got {sums.dtype}")
    if counts.dtype not in COUNT_DTYPES:
        raise TypeError(f"counts must be an int32/int64/float32/float64 tensor, got {counts.dtype}")
    check_shape("sums", sums, (None, None, None))
    classes, height, width = sums.shape
    check_shape("counts", counts, (classes,))
    check_shape("maps", maps, (None, height, width))
    return check_labels(labels, maps.shape[0], classes)


def check_mean_map_l1(fg: torch.Tensor, mean_maps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """fg (B, 1, H, W) with B >= 1 and mean_maps (C, H, W) floating, mean_maps fixed (no grad),
    labels (B,) in [0, C), on one device; returns the labels contiguous."""
    check_floating("fg", fg)
    check_floating("mean_maps", mean_maps)
    check_same_device(fg=fg, mean_maps=mean_maps, labels=labels)
    if mean_maps.requires_grad:
        raise ValueError("mean_maps requires grad: it is a fixed buffer here (detach it)")
    check_shape("mean_maps", mean_maps, (None, None, None))
    classes, height, width = mean_maps.shape
    check_shape("fg", fg, (None, 1, height, width))
    if fg.shape[0] == 0:
        raise ValueError("fg is an empty batch: the mean over it is undefined")
    return check_labels(labels, fg.shape[0], classes)
