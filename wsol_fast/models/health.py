"""Is a model usable? Finite weights and buffers, and finite outputs (eval mode) on real images.

A diverged run can hold finite weights whose next forward overflows (weights of 1e27 multiplied
through 14 blocks); such a model must never be saved as a good checkpoint nor evaluated.
"""
import torch
from torch import nn

from .mobilenet_bas import MobileNetBAS

PROBE_SIZE = 64  # side of the seeded probe images used when no real batch is at hand


def probe_images(batch: int = 2, size: int = PROBE_SIZE) -> torch.Tensor:
    """(batch, 3, size, size) float32 images drawn from a fixed seed (normalized-image scale)."""
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


def non_finite_tensors(module: nn.Module) -> list[str]:
    """Names of the parameters and buffers holding NaN or Inf."""
    tensors = [*module.named_parameters(), *module.named_buffers()]
    return [name for name, tensor in tensors if tensor.is_floating_point() and not torch.isfinite(tensor).all()]


@torch.no_grad()
def model_problem(model: MobileNetBAS, images: torch.Tensor | None = None) -> str | None:
    """Why ``model`` is unusable, or None when it is fine: non-finite weights or buffers, or
    non-finite backbone features, class maps or generator maps in eval mode on ``images``
    (B, 3, H, W) (default: ``probe_images()`` on the model's device)."""
    bad = non_finite_tensors(model)
    if bad:
        return f"non-finite weights in {len(bad)} tensor(s), first {bad[0]}"
    if images is None:
        images = probe_images().to(next(model.parameters()).device)
    was_training = model.training
    model.eval()
    try:
        x4 = model.backbone(images)
        outputs = {"backbone features": x4, "class maps": model.classifier(x4),
                   "generator maps": model.generator_maps(x4)}
    finally:
        model.train(was_training)
    largest = max(float(p.detach().abs().max()) for p in model.parameters())
    for name, tensor in outputs.items():
        if not torch.isfinite(tensor).all():
            return f"its forward pass gives non-finite {name} (largest weight {largest:.3g}): the run diverged"
    return None
