"""``--deterministic``: the same command gives bit-identical checkpoints on GPUs too.

On the CPU a run is already reproducible (fixed seeds, per-sample augmentation from
``(seed, epoch, index)``, DALI graphs without random operators). On CUDA, cuDNN's algorithm search,
its non-deterministic kernels (the depthwise convolutions' backward among them), cuBLAS's split
workspaces and the class-sum kernel's float atomics make runs differ in the last bits; this mode
switches each to its deterministic form, at some cost in speed.
"""
import os

import torch


def use_deterministic_algorithms() -> None:
    """Deterministic cuBLAS workspaces, cuDNN algorithms and PyTorch ops (an op without a
    deterministic form raises); the op registry then also avoids Triton atomics."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
