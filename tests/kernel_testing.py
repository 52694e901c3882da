"""Shared set-up of the Triton kernel tests: the device they run on, and a guard that the
kernels really run in the interpreter when there is no GPU (``conftest.py`` sets
``TRITON_INTERPRET=1`` before anything imports them)."""
import torch

from wsol_fast.kernels.utils import INTERPRETER

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and not INTERPRETER:
    raise RuntimeError("no CUDA and wsol_fast.kernels was imported without TRITON_INTERPRET=1")
