"""Compile-check the extension's CUDA side without a GPU: each ``csrc/*.cu`` with nvcc, and the
bindings with ``WITH_CUDA`` defined, with the flags ``setup.py``'s CUDAExtension uses, for one
architecture (``TORCH_CUDA_ARCH_LIST``, default 9.0), objects discarded. The host-only sources
are left out: ``make setup`` has just compiled them, and compiling them again was most of the
time of a full ``FORCE_CUDA=1`` build. Runs ``--jobs`` compilers at once; exits non-zero on the
first source that fails, after printing its errors.

    python .ci/compile_cuda.py            # what `make cuda-check` runs
"""
import argparse
import os
import subprocess
import sys
import sysconfig
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if "CUDA_HOME" not in os.environ and os.path.isdir("/usr/local/cuda"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"  # as setup.py: a wrapper nvcc on PATH misleads torch
os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "9.0")

from torch.utils import cpp_extension  # noqa: E402


def commands() -> list[tuple[str, list[str]]]:
    """(source name, compile command) per source: nvcc for ``.cu``, the host compiler for the
    bindings."""
    includes = [f"-I{path}" for path in cpp_extension.include_paths("cuda")]
    includes += [f"-I{sysconfig.get_paths()['include']}", f"-I{ROOT / 'csrc'}"]
    defines = ["-DWITH_CUDA", "-DTORCH_EXTENSION_NAME=_C", "-DTORCH_API_INCLUDE_EXTENSION_H"]
    nvcc = str(Path(cpp_extension.CUDA_HOME) / "bin" / "nvcc")
    found = [(source.name, [nvcc, "-c", str(source), "-o", os.devnull, "-O3", "-std=c++20", "-Xcompiler", "-fPIC",
                            *cpp_extension.COMMON_NVCC_FLAGS, *cpp_extension._get_cuda_arch_flags(),
                            *includes, *defines])
             for source in sorted((ROOT / "csrc").glob("*.cu"))]
    bindings = ROOT / "csrc" / "bindings.cpp"
    found.append((bindings.name, ["c++", "-fsyntax-only", "-std=c++20", "-fPIC", str(bindings), *includes, *defines]))
    return found


def compile_one(name: str, command: list[str]) -> tuple[str, int, str, float]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    return name, done.returncode, done.stderr, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="compilers at once")
    args = parser.parse_args()
    failed = 0
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for name, rc, errors, seconds in pool.map(lambda job: compile_one(*job), commands()):
            print(f"{name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {seconds:.0f} s", flush=True)
            if rc != 0:
                print(errors, file=sys.stderr)
                failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
