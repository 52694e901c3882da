"""Evaluation ops, dispatched. Signatures, shapes and definitions are those of
``eval_reference``. The C++/CUDA extension (``ext``) serves percentile normalization and box
extraction whenever it is built for the maps' device; ``WSOL_FAST_OPS=reference`` forces the
reference and ``WSOL_FAST_OPS=ext`` requires the extension. Ops the extension does not have
(other normalizations, all-component boxes) always run the reference."""
import warnings

import torch

from . import eval_reference as reference
from . import ext
from .dispatch import forced_backend


def use_extension(maps: torch.Tensor) -> bool:
    """Whether the extension serves ``maps``; says so (once) when it cannot."""
    backend = forced_backend()
    if backend == "reference":
        return False
    usable = ext.available() and (maps.device.type == "cpu" or ext.has_cuda())
    if backend == "ext" and not usable:
        raise RuntimeError(f"WSOL_FAST_OPS=ext, but wsol_fast._C is not built for {maps.device.type} "
                           "tensors (pip install --no-build-isolation -e .; FORCE_CUDA=1 for CUDA)")
    if not usable:
        warnings.warn(f"wsol_fast._C is not built for {maps.device.type} tensors: evaluation ops "
                      "run the slow PyTorch reference", RuntimeWarning, stacklevel=3)
    return usable


def percentile_max_normalize(maps: torch.Tensor, p: float = 99.0) -> torch.Tensor:
    """clamp(M / P_p(M), 0, 1) per map. (B, H, W) float -> float32."""
    implementation = ext if use_extension(maps) else reference
    return implementation.percentile_max_normalize(maps, p)


def normalize(maps: torch.Tensor, spec: str) -> torch.Tensor:
    """Normalize by spec "minmax" | "max" | "percentile:P" | "pas[:P]" | "ivr:P". (B, H, W) -> float32."""
    name, p = reference.parse_normalization(spec)
    if name == "percentile":
        return percentile_max_normalize(maps, p)
    return reference.normalize(maps, spec)


def largest_component_boxes(maps: torch.Tensor, thresholds, empty: str = "full") -> torch.Tensor:
    """Largest 8-connected component's box of ``maps > t`` per threshold. (B, H, W) -> (B, T, 4) int64."""
    implementation = ext if use_extension(maps) else reference
    return implementation.largest_component_boxes(maps, thresholds, empty)


def all_component_boxes(maps: torch.Tensor, threshold: float) -> list[torch.Tensor]:
    """Boxes of all 8-connected components of ``maps > threshold``: B tensors (K_b, 4) int64."""
    return reference.all_component_boxes(maps, threshold)
