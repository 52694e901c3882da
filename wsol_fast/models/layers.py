"""Model layers beyond torch.nn: BatchNorm whose statistics are those of the global batch (all
ranks), on any device and backend."""
import torch
from torch import nn

from ..collectives import all_reduce_sum_, world_size


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over the ranks: the gradient of each rank's input is the sum of the
    gradients of every rank's output."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        return all_reduce_sum_(tensor.clone())

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return all_reduce_sum_(grad.clone())


class CrossRankBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch (all ranks), on
    any device and backend (gloo included; ``torch.nn.SyncBatchNorm`` takes GPU tensors only).

    Two differentiable all-reduces per call: per-channel sums (and the count), then the sums of
    squared deviations from the global mean. Statistics are computed in float32. Alone, or in
    eval mode, it is plain BatchNorm2d. It works inside ``torch.func.functional_call``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        x32 = x.float()
        local = torch.cat([x32.sum(dim=(0, 2, 3)), x32.new_tensor([x32.numel() / x32.shape[1]])])
        total = _AllReduceSum.apply(local)
        count = total[-1]
        mean = total[:-1] / count
        centered = x32 - mean.view(1, -1, 1, 1)
        var = _AllReduceSum.apply((centered * centered).sum(dim=(0, 2, 3))) / count
        out = centered * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            out = out * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var.detach() * (count / (count - 1).clamp(min=1))
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        return out.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module, on_gpu: bool) -> nn.Module:
    """Every BatchNorm2d of ``module`` normalized with global-batch statistics: torch's
    SyncBatchNorm on GPUs, ``CrossRankBatchNorm2d`` elsewhere (same parameters and buffers)."""
    if on_gpu:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            replacement = CrossRankBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                               child.track_running_stats)
            replacement.load_state_dict(child.state_dict())
            replacement.to(child.weight.device if child.affine else "cpu")
            replacement.train(child.training)
            setattr(module, name, replacement)
        else:
            convert_sync_batchnorm(child, on_gpu)
    return module
