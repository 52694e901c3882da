"""The cross-rank primitives every layer may use: this process's rank, the number of processes
and a sum over them, each a no-op alone (no process group). ``engine.distributed`` starts and
ends the group; models use these for cross-rank BatchNorm."""
import contextlib

import torch
import torch.distributed as dist


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
