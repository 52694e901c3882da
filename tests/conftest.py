"""Shared fixtures (a tiny synthetic WSOL dataset generated once per test session) and the
markers that group the tests: each module is ``unit``, ``kernels``, ``extension`` or
``integration`` (``GROUPS``); integration tests, which run whole commands, are also ``slow``, so
``pytest -m "not slow" tests`` is the quick loop; ``gpu`` tests need CUDA and are skipped
without it."""
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
GROUPS = {  # group -> module name prefixes; every other module is "unit"
    "kernels": ("test_kernels_", "test_devices"),
    "extension": ("test_ext", "test_boxes", "test_normalization", "test_contours", "test_pxap"),
    "integration": ("test_distributed", "test_reproducibility", "test_gpu_check", "test_training",
                    "test_pipeline_bench", "test_step_options", "test_output", "test_run_folder",
                    "test_robustness", "test_untrusted_run_folder", "test_skip_bad_images", "test_throughput_smoke",
                    "test_pretrain", "test_probe", "test_visualize", "test_bas_baseline", "test_localize",
                    "test_eval_ops_bench", "test_demo", "test_wsolevaluation_commands"),
}
MARKERS = {"unit": "small pieces on their own", "kernels": "Triton kernels against their references",
           "extension": "the C++/CUDA extension against its reference",
           "integration": "whole commands and runs", "slow": "the integration tests (deselect for a quick loop)",
           "gpu": "needs CUDA (skipped without it)"}


def pytest_configure(config):
    for name, meaning in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {meaning}")


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__
        group = next((name for name, prefixes in GROUPS.items() if module.startswith(prefixes)), "unit")
        item.add_marker(group)
        if group == "integration":
            item.add_marker("slow")
        if item.get_closest_marker("gpu") and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs a GPU"))


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
