"""Run by tests/test_distributed.py under the real ``deepspeed`` launcher: class-mean maps and
evaluation counts of a checkpoint, each process on its shard, all-reduced, and BatchNorm buffers
that differ by rank, averaged; rank 0 saves them.

    deepspeed --num_gpus 2 tests/distributed_worker.py CHECKPOINT OUT.pt
"""
import sys

import torch

from wsol_fast.checkpoint import atomic_save
from wsol_fast.config import TrainConfig
from wsol_fast import collectives
from wsol_fast.engine import distributed
from wsol_fast.engine.evaluate import EvalSettings, evaluate
from wsol_fast.data import load_data_split
from wsol_fast.engine.mean_map_pass import compute_mean_maps
from wsol_fast.models.restore import model_from_checkpoint


def mean_maps_and_counts(checkpoint: str) -> dict:
    """``{"maps", "counts", "eval"}`` of ``checkpoint`` on its training/test splits."""
    model, state = model_from_checkpoint(checkpoint)
    cfg = TrainConfig.from_dict(state["config"])
    cfg.run.device = "cpu"
    mean_maps = compute_mean_maps(cfg, model, load_data_split(cfg, "train"))
    result = evaluate(model, load_data_split(cfg, "test"), EvalSettings(protocol="both"),
                      image_size=cfg.data.image_size, resize=cfg.data.resize, batch_size=3, loader="torch")
    return {"maps": mean_maps.maps, "counts": mean_maps.counts, "eval": result}


def rank_buffers(rank: int) -> torch.Tensor:
    """(2, 5) float32: the running mean and variance a BatchNorm2d(5) holds on process ``rank``."""
    generator = torch.Generator().manual_seed(rank)
    return torch.stack([torch.randn(5, generator=generator), torch.rand(5, generator=generator) + 0.5])


def averaged_batchnorm_buffers() -> torch.Tensor:
    """This process's ``rank_buffers`` after ``average_batchnorm_buffers_`` (as before a checkpoint)."""
    layer = torch.nn.BatchNorm2d(5)
    layer.running_mean.copy_(rank_buffers(collectives.rank())[0])
    layer.running_var.copy_(rank_buffers(collectives.rank())[1])
    distributed.average_batchnorm_buffers_(torch.nn.Sequential(layer))
    return torch.stack([layer.running_mean, layer.running_var])


if __name__ == "__main__":
    checkpoint, out = [a for a in sys.argv[1:] if not a.startswith("--local_rank")]
    distributed.init_process_group()
    result = mean_maps_and_counts(checkpoint)
    result["world_size"] = collectives.world_size()
    result["batchnorm_buffers"] = averaged_batchnorm_buffers()
    if collectives.is_main():
        atomic_save(result, out)
    distributed.shutdown()
