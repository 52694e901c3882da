"""Build wsol_fast, its Triton kernels (``kernels/`` as ``wsol_fast.kernels``) and the
evaluation extension ``wsol_fast._C`` from ``csrc/``.

The C++ sources are always built. CUDA sources are added when torch is a CUDA build and a
CUDA toolchain is found, or when ``FORCE_CUDA=1`` (e.g. to compile-check them on a host
without a GPU). ``TORCH_CUDA_ARCH_LIST`` defaults to ``8.0;9.0+PTX``: A100 and H100/H200 code, plus
PTX that newer GPUs compile at load (without it they get "no kernel image").
"""
import glob
import os

# torch guesses CUDA_HOME from the location of `nvcc`, which a wrapper script in /usr/local/bin
# misleads; the toolkit's standard home is the better guess when nothing is set.
if "CUDA_HOME" not in os.environ and os.path.isdir("/usr/local/cuda"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

from setuptools import find_packages, setup  # noqa: E402
import torch  # noqa: E402
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def _want_cuda() -> bool:
    if os.environ.get("FORCE_CUDA", "0") == "1":
        return True
    return torch.version.cuda is not None and CUDA_HOME is not None and torch.cuda.is_available()


def _extension():
    cpp_sources = sorted(glob.glob("csrc/*.cpp"))
    cuda_sources = sorted(glob.glob("csrc/*.cu"))
    # ATen's parallel_for is inline: without OpenMP here it would run every map on one thread.
    cxx_flags = ["-O3", "-std=c++20", "-fopenmp"]
    if _want_cuda() and cuda_sources:
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0+PTX")
        return CUDAExtension(
            "wsol_fast._C",
            cpp_sources + cuda_sources,
            define_macros=[("WITH_CUDA", None)],
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-std=c++20"]},
            extra_link_args=["-fopenmp"],
        )
    return CppExtension("wsol_fast._C", cpp_sources, extra_compile_args={"cxx": cxx_flags},
                        extra_link_args=["-fopenmp"])


setup(
    name="wsol_fast",
    version="0.1.0",
    description="High-throughput trainer for weakly supervised object localization (BAS + class-mean maps)",
    packages=find_packages(include=["wsol_fast", "wsol_fast.*"]) + ["wsol_fast.kernels"],
    package_dir={"wsol_fast.kernels": "kernels"},
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=False)},
    entry_points={"console_scripts": ["wsol-fast = wsol_fast.cli:main"]},
    python_requires=">=3.10",
    install_requires=["torch", "torchvision", "numpy", "rich", "pillow"],
)
