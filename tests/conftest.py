"""Shared fixtures: a tiny synthetic WSOL dataset generated once per test session."""
import os
from pathlib import Path

import torch

# Triton reads TRITON_INTERPRET when a kernel is decorated, and torchvision can load triton
# early: set it before anything else imports the kernels, so they run on the CPU here.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from wsol_fast.data.synthetic import SyntheticSpec, generate_synthetic

TINY_SYNTHETIC_SPEC = SyntheticSpec(num_classes=4, train_per_class=3, test_per_class=2, image_size=64, seed=0)


@pytest.fixture(autouse=True)
def default_algorithms():
    """Every test starts with PyTorch's default (non-deterministic) algorithms, whatever a
    ``--deterministic`` run in an earlier test switched on."""
    yield
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.deterministic = torch.backends.cudnn.benchmark = False


@pytest.fixture(scope="session")
def tiny_synthetic_spec() -> SyntheticSpec:
    """4 classes x (3 train + 2 test) images of 64 px."""
    return TINY_SYNTHETIC_SPEC


@pytest.fixture(scope="session")
def tiny_synthetic_root(tmp_path_factory) -> Path:
    """Root of ``TINY_SYNTHETIC_SPEC`` generated in CUB layout (read-only for tests)."""
    return generate_synthetic(tmp_path_factory.mktemp("synthetic") / "tiny", TINY_SYNTHETIC_SPEC)
