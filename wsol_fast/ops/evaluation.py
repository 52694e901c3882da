"""Evaluation ops through the op registry (``registry``). Signatures, shapes and definitions
are those of ``eval_reference``; the C++/CUDA extension (``ext``) serves percentile
normalization, box extraction and the PxAP histograms wherever it is built for the maps'
device. Ops the extension does not have (the other normalizations, all-component boxes) run
the reference."""
import torch

from . import eval_reference as reference
from . import ext
from .registry import FastPath, Op


def extension_unavailable(maps: torch.Tensor, forced: bool) -> str | None:
    """Why the extension cannot serve ``maps`` (None: it can)."""
    if ext.available() and (maps.device.type == "cpu" or ext.has_cuda()):
        return None
    return (f"wsol_fast._C is not built for {maps.device.type} tensors (pip install --no-build-isolation -e .; "
            "FORCE_CUDA=1 for CUDA)")


def extension_unbuilt(tensor: torch.Tensor, forced: bool) -> str | None:
    """Why the extension cannot serve an op that it runs on the CPU for tensors of any device
    (None: it can)."""
    return None if ext.available() else "wsol_fast._C is not built (pip install --no-build-isolation -e .)"


def extension(function) -> FastPath:
    """The fast path of the extension's ``function`` (looked up in ``ext`` at each call)."""
    def call(*args, **kwargs):
        return getattr(ext, function.__name__)(*args, **kwargs)

    return FastPath("ext", call, extension_unavailable, warn=True)


# clamp(M / P_p(M), 0, 1) per map. (B, H, W) float -> float32.
percentile_max_normalize = Op("percentile_max_normalize", reference.percentile_max_normalize,
                              extension(ext.percentile_max_normalize))
# Largest 8-connected component's box of ``maps > t`` per threshold. (B, H, W) -> (B, T, 4) int64.
largest_component_boxes = Op("largest_component_boxes", reference.largest_component_boxes,
                             extension(ext.largest_component_boxes))
# numpy.histogram of the values at mask / other pixels over the PxAP edges t_0, ..., t_{T-1}, 1, 2, 3.
# (B, H, W) float, (B, H, W) bool masks and ignore -> two (B, T + 2) int64.
pxap_histograms = Op("pxap_histograms", reference.pxap_histograms, extension(ext.pxap_histograms))


def normalize(maps: torch.Tensor, spec: str) -> torch.Tensor:
    """Normalize by spec "minmax" | "max" | "percentile:P" | "pas[:P]" | "ivr:P". (B, H, W) -> float32."""
    name, p = reference.parse_normalization(spec)
    if name == "percentile":
        return percentile_max_normalize(maps, p)
    return reference.normalize(maps, spec)


def all_component_boxes(maps: torch.Tensor, threshold: float) -> list[torch.Tensor]:
    """Boxes of all 8-connected components of ``maps > threshold``: B tensors (K_b, 4) int64."""
    return reference.all_component_boxes(maps, threshold)
