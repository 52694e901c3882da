"""Processes and DeepSpeed configuration (the cross-rank primitives are ``collectives``').

One process (``python launch/train.py``) or many (``deepspeed launch/train.py``): the launcher
sets ``RANK``/``LOCAL_RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT``; without them this
module fills in a world of one (free local port), so every run goes through the same
``deepspeed.init_distributed`` + ``deepspeed.initialize`` path. The accelerator is DeepSpeed's
(``DS_ACCELERATOR``; set here to ``cpu`` when no GPU is visible): gloo on CPU hosts, NCCL on GPUs.
"""
import json
import logging
import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from ..collectives import all_reduce_sum_, barrier, world_size

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


def average_batchnorm_buffers_(module: nn.Module) -> None:
    """Average BatchNorm running means and variances over the ranks, in place: DeepSpeed
    broadcasts parameters only, so each rank's statistics follow its own shard."""
    if world_size() == 1:
        return
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.track_running_stats:
            for buffer in (layer.running_mean, layer.running_var):
                all_reduce_sum_(buffer).div_(world_size())


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
