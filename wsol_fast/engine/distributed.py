"""Processes, DeepSpeed configuration and cross-rank reductions.

One process (``python launch/train.py``) or many (``deepspeed launch/train.py``): the launcher
sets ``RANK``/``LOCAL_RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT``; without them this
module fills in a world of one (free local port), so every run goes through the same
``deepspeed.init_distributed`` + ``deepspeed.initialize`` path. The accelerator is DeepSpeed's
(``DS_ACCELERATOR``; set here to ``cpu`` when no GPU is visible): gloo on CPU hosts, NCCL on GPUs.
"""
import contextlib
import json
import logging
import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

# DeepSpeed settings used when no --deepspeed_config is given (= launch/configs/ds_fp32.json).
DEFAULT_DS_CONFIG = {"gradient_clipping": 0.0, "steps_per_print": 1000000000, "wall_clock_breakdown": False}
# What a launcher (or ``init_process_group`` for a world of one) puts in the environment: a child
# process that should start its own run must not inherit them.
LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
BATCH_KEYS = ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps")


def deepspeed_module():
    """``import deepspeed`` with the accelerator chosen (CPU unless a GPU is visible) and its
    INFO logging kept out of the progress output."""
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if torch.cuda.is_available() else "cpu")
    import deepspeed
    from deepspeed.utils import logger

    logger.setLevel(logging.WARNING)
    return deepspeed


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def select_local_device() -> None:
    """On GPU hosts make ``cuda:LOCAL_RANK`` this process's current device, before anything
    launches a kernel (DeepSpeed sets it only inside ``deepspeed.initialize``; the late stage's
    mean-map pass runs before that)."""
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))


def init_process_group() -> None:
    """Join (or, alone, create) the process group through DeepSpeed, this rank's GPU selected
    first; idempotent."""
    if dist.is_initialized():
        return
    if "WORLD_SIZE" not in os.environ:  # plain `python launch/train.py`: a world of one
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
    select_local_device()
    deepspeed = deepspeed_module()
    from deepspeed.accelerator import get_accelerator

    if get_accelerator().device_name() == "cpu":
        # DeepSpeed JIT-compiles its shared-memory all-reduce (used by inference only) when the
        # process group is made, ~80 s on a fresh 2-core host; training never calls it.
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.init_distributed(dist_backend=get_accelerator().communication_backend_name(),
                               auto_mpi_discovery=False)


def shutdown() -> None:
    """Leave the process group (every rank, at the end of a run)."""
    if dist.is_initialized():
        barrier()
        dist.destroy_process_group()


def device() -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` on GPU hosts, else ``cpu``."""
    from deepspeed.accelerator import get_accelerator

    return torch.device(get_accelerator().device_name(int(os.environ.get("LOCAL_RANK", 0))))


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


@contextlib.contextmanager
def main_first():
    """Rank 0 runs the block first (e.g. to create files); the other ranks then run it."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the ranks, in place (a no-op alone); returns it."""
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def average_batchnorm_buffers_(module: nn.Module) -> None:
    """Average BatchNorm running means and variances over the ranks, in place: DeepSpeed
    broadcasts parameters only, so each rank's statistics follow its own shard."""
    if world_size() == 1:
        return
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.track_running_stats:
            for buffer in (layer.running_mean, layer.running_var):
                all_reduce_sum_(buffer).div_(world_size())


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


def load_ds_config(path: str | None) -> dict:
    """The DeepSpeed JSON config at ``path`` (None: ``DEFAULT_DS_CONFIG``); errors name the file."""
    if path is None:
        return dict(DEFAULT_DS_CONFIG)
    try:
        config = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"--deepspeed_config: no such file {path}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{error.lineno}: not valid JSON: {error.msg}") from error
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a DeepSpeed config must be a JSON object")
    if config.get("bf16", {}).get("enabled") or config.get("fp16", {}).get("enabled"):
        raise ValueError(f"{path}: the 'bf16'/'fp16' sections cast BatchNorm buffers and master weights; "
                         "use the 'torch_autocast' section for mixed precision (launch/configs/ds_bf16.json)")
    return config


# The torch_autocast section `--precision bf16` adds (launch/configs/ds_bf16.json has the same).
BF16_AUTOCAST = {"enabled": True, "dtype": "bfloat16", "lower_precision_safe_modules": ["torch.nn.Conv2d"]}
BF16_NAMES = ("bfloat16", "bf16", "torch.bfloat16")


def with_precision(config: dict, precision: str, source: str = "config") -> tuple[dict, str]:
    """(``config``, precision of the run): ``--precision bf16`` adds the bf16 ``torch_autocast``
    section, and a config that enables that section makes the run bf16 (``TrainStep`` autocasts
    forward + loss, DeepSpeed its forward, with the same dtype); other autocast dtypes are refused."""
    section = config.get("torch_autocast", {})
    if not section.get("enabled"):
        return ({**config, "torch_autocast": dict(BF16_AUTOCAST)}, "bf16") if precision == "bf16" else (config, precision)
    if section.get("dtype") not in BF16_NAMES:
        raise ValueError(f"{source}: torch_autocast needs \"dtype\": \"bfloat16\" (got {section.get('dtype')!r}); "
                         "float16 would need loss scaling, which this trainer does not do")
    return config, "bf16"


def with_batch_sizes(config: dict, global_batch: int, grad_accum: int, world: int, source: str = "config") -> dict:
    """``config`` with DeepSpeed's batch keys set from ``global_batch`` images per optimizer
    step = micro batch x ``grad_accum`` x ``world``; keys already in ``config`` must agree."""
    micro, rest = divmod(global_batch, grad_accum * world)
    if rest or micro == 0:
        raise ValueError(f"--batch-size {global_batch} is not a multiple of --grad-accum {grad_accum} x "
                         f"{world} processes")
    sizes = dict(zip(BATCH_KEYS, (global_batch, micro, grad_accum)))
    for key, value in sizes.items():
        if key in config and config[key] != value:
            raise ValueError(f"{source}: {key}={config[key]} disagrees with --batch-size {global_batch}, "
                             f"--grad-accum {grad_accum} on {world} processes ({key}={value}); "
                             "drop it from the file")
    return {**config, **sizes}


def resolve_device(requested: str) -> str:
    """This process's device: DeepSpeed's accelerator decides (``cuda:LOCAL_RANK`` or ``cpu``);
    ``requested`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) must agree with it."""
    actual = device()
    if requested not in ("auto", actual.type, str(actual)):
        raise ValueError(f"--device {requested}: this process runs on {actual} (DeepSpeed accelerator "
                         f"DS_ACCELERATOR={os.environ.get('DS_ACCELERATOR')}; select GPUs with "
                         "CUDA_VISIBLE_DEVICES or the deepspeed launcher's --include)")
    return str(actual)
