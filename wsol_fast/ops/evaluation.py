"""Evaluation ops, dispatched. Signatures, shapes and definitions are those of
``eval_reference``; ``WSOL_FAST_OPS=reference`` forces the reference. The "triton" backend has
no evaluation ops, so forcing it (like leaving the choice unset) gets the default backend."""
from types import ModuleType

import torch

from . import eval_reference as reference
from .dispatch import forced_backend

_IMPLEMENTATIONS: dict[str, ModuleType] = {"reference": reference}
_DEFAULT_BACKEND = "reference"


def _implementation() -> ModuleType:
    default = _IMPLEMENTATIONS[_DEFAULT_BACKEND]
    return _IMPLEMENTATIONS.get(forced_backend() or _DEFAULT_BACKEND, default)


def percentile_max_normalize(maps: torch.Tensor, p: float = 99.0) -> torch.Tensor:
    """clamp(M / P_p(M), 0, 1) per map. (B, H, W) float -> float32."""
    return _implementation().percentile_max_normalize(maps, p)


def normalize(maps: torch.Tensor, spec: str) -> torch.Tensor:
    """Normalize by spec "minmax" | "max" | "percentile:P" | "pas[:P]" | "ivr:P". (B, H, W) -> float32."""
    return _implementation().normalize(maps, spec)


def largest_component_boxes(maps: torch.Tensor, thresholds, empty: str = "full") -> torch.Tensor:
    """Largest 8-connected component's box of ``maps > t`` per threshold. (B, H, W) -> (B, T, 4) int64."""
    return _implementation().largest_component_boxes(maps, thresholds, empty)


def all_component_boxes(maps: torch.Tensor, threshold: float) -> list[torch.Tensor]:
    """Boxes of all 8-connected components of ``maps > threshold``: B tensors (K_b, 4) int64."""
    return _implementation().all_component_boxes(maps, threshold)
