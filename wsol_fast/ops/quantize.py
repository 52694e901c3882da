"""wsolevaluation's quantization of score maps, written once for every implementation of its
contour rule: ``scoremap_image = (scoremap * 255).astype(np.uint8)`` and, for a threshold t, the
mask ``scoremap_image > int(t * scoremap_image.max())`` (cv2.THRESH_BINARY)."""
import torch

from .checks import as_thresholds, check_maps


def wsolevaluation_levels(maps: torch.Tensor, thresholds) -> tuple[torch.Tensor, torch.Tensor]:
    """maps (B, H, W) float in [0, 1], thresholds float | sequence | (T,) -> (levels (B, H, W)
    uint8 on the CPU, integer thresholds (B, T) int64, clamped to [-1, 255]: a pixel is
    foreground at step t when ``levels > thresholds[:, t]``). The product with 255 is rounded in
    the maps' dtype (float32 or float64, as numpy would; half types go through float32) and
    truncated; ``int(t * max)`` is taken in float64, as in wsolevaluation. Maps outside [0, 1]
    or not finite raise ValueError naming the map (wsolevaluation's check_scoremap_validity)."""
    check_maps(maps)
    steps = as_thresholds(thresholds)
    values = maps if maps.dtype in (torch.float32, torch.float64) else maps.float()
    invalid = ~torch.isfinite(values) | (values < 0) | (values > 1)
    flagged = invalid.flatten(1).any(dim=1)
    if bool(flagged.any()):
        first = int(torch.nonzero(flagged)[0])
        raise ValueError(f"maps: map {first} has values outside [0, 1] or NaN/Inf "
                         "(wsolevaluation's contour rule scores normalized maps)")
    levels = (values * 255).to(torch.uint8).cpu()
    highest = levels.flatten(1).amax(dim=1).to(torch.float64)
    integer = torch.trunc(steps.unsqueeze(0) * highest.unsqueeze(1)).clamp(-1, 255).to(torch.int64)
    return levels, integer
