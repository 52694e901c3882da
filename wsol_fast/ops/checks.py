"""Input checks of the evaluation ops, written once: the reference (``eval_reference``) and the
extension's wrappers (``ext``) both call these, so both refuse bad input with the same message.
(The C++ bindings keep their own checks: the last guard of the raw ``wsol_fast._C`` functions.
NaN and Inf are found by each implementation where the maps are read: the extension in its
kernels, the reference on the host.)"""
import torch

EMPTY_BOXES = ("full", "zero")  # the box of an empty mask: the whole image, or [0, 0, 0, 0]
PERCENTILE = 99.0  # percentile-max normalization's default p (the paper's)


def check_maps(maps) -> None:
    """Raise ValueError unless ``maps`` is a floating (B, H, W) tensor with H W > 0."""
    if not isinstance(maps, torch.Tensor) or maps.ndim != 3 or not maps.is_floating_point():
        described = (f"{maps.dtype} tensor of shape {tuple(maps.shape)}"
                     if isinstance(maps, torch.Tensor) else type(maps).__name__)
        raise ValueError(f"maps: expected a float tensor (B, H, W), got a {described}")
    if maps.shape[1] * maps.shape[2] == 0:
        raise ValueError(f"maps: empty maps of shape {tuple(maps.shape)}")


def check_percent(p: float, name: str = "p") -> float:
    """``p`` as a float in [0, 100], else ValueError naming it ``name``."""
    value = float(p)
    if not 0.0 <= value <= 100.0:
        raise ValueError(f"{name}={p!r}: a percentile must lie in [0, 100]")
    return value


def as_thresholds(thresholds) -> torch.Tensor:
    """A float, a sequence of floats or a 0-/1-D tensor -> 1-D float64 tensor (T,), T >= 1."""
    values = torch.as_tensor(thresholds, dtype=torch.float64).flatten()
    if values.numel() == 0:
        raise ValueError("thresholds: no threshold given")
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"thresholds: non-finite value(s) in {values.tolist()}")
    return values


def empty_is_full(empty: str) -> bool:
    """Whether an empty mask's box is the whole image (``empty`` one of ``EMPTY_BOXES``)."""
    if empty not in EMPTY_BOXES:
        raise ValueError(f"empty={empty!r}: expected 'full' (whole image) or 'zero' ([0, 0, 0, 0])")
    return empty == "full"


PXAP_TOP_EDGES = (1.0, 2.0, 3.0)  # wsolevaluation's edges after the map thresholds


def pxap_edges(thresholds) -> torch.Tensor:
    """Map thresholds (T,) -> PxAP bin edges (T + 3,) float64: the thresholds as given (not
    rounded to the maps' dtype: numpy compares the values against float64 edges), then 1, 2, 3.
    The edges must not descend (numpy.histogram's rule), so the thresholds ascend and are <= 1."""
    levels = as_thresholds(thresholds)
    edges = torch.cat([levels, torch.tensor(PXAP_TOP_EDGES, dtype=torch.float64)])
    if not bool((edges[1:] >= edges[:-1]).all()):
        raise ValueError(f"thresholds: must ascend and stay <= 1.0 (bin edges of numpy.histogram, "
                         f"followed by 1, 2, 3), got {levels.tolist()}")
    return edges


def check_pixel_masks(maps: torch.Tensor, masks, ignore) -> None:
    """Raise ValueError unless ``masks`` (and ``ignore`` unless None) are bool tensors of the
    maps' shape on their device."""
    named = [("masks", masks)] + ([] if ignore is None else [("ignore", ignore)])
    for name, value in named:
        if (not isinstance(value, torch.Tensor) or value.dtype != torch.bool
                or value.shape != maps.shape or value.device != maps.device):
            described = (f"{value.dtype} tensor of shape {tuple(value.shape)} on {value.device}"
                         if isinstance(value, torch.Tensor) else type(value).__name__)
            raise ValueError(f"{name}: expected a bool tensor of the maps' shape {tuple(maps.shape)} "
                             f"on {maps.device}, got a {described}")
