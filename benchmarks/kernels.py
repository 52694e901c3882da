"""Micro-benchmark of the Triton training kernels (``wsol_fast.kernels``) against eager PyTorch
and ``torch.compile`` of the reference ops, forward + backward, at ImageNet shapes.

Each case times one training-step use of an op (forward, then the gradients autograd would
compute) with CUDA events after warm-up, and reports the time of each implementation, the
Triton kernel's speed-up over both baselines, and its achieved bandwidth: the bytes the op must
move at least (every input read once, every output written once) over the time, also as a share
of this device's copy bandwidth, measured in the same run with a large ``copy_``.

    python benchmarks/kernels.py [--batch 256] [--classes 1000] [--dtypes fp32 bf16]
                                 [--ops foreground_epilogue ...] [--out runs/benchmarks/kernels.json]

Needs a CUDA GPU; exits with a message otherwise. ``--dry-run`` runs every case at tiny shapes
on the CPU instead (Triton through its interpreter, ``torch.compile`` with the ``aot_eager``
backend, host timing), so the script cannot rot where no GPU is; its times mean nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Shapes:
    """ImageNet-scale sizes of one training step."""
    batch: int = 256
    classes: int = 1000
    channels: int = 512      # x4 channels
    map_size: int = 28       # generator / foreground map side
    class_map_size: int = 14  # classifier map side


@dataclass(frozen=True)
class Case:
    """One op on its inputs: ``step(op)`` runs forward + backward with implementation ``op`` and
    returns the tensors to compare; ``min_bytes`` is the least traffic that needs."""
    op: str
    step: Callable[[Callable], tuple]
    min_bytes: int


def _size(*tensors: torch.Tensor) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def foreground_epilogue_case(shapes: Shapes, dtype: torch.dtype, device: str) -> Case:
    b, s = shapes.batch, shapes.map_size
    logits = torch.randn(b, 1, s, s, device=device, dtype=dtype).requires_grad_()
    grads = (torch.randn(b, 1, s, s, device=device, dtype=dtype), torch.randn(b, device=device, dtype=dtype),
             torch.randn(b, 1, s // 2, s // 2, device=device, dtype=dtype))

    def step(op):
        outputs = op(logits)
        return (*outputs, *torch.autograd.grad(outputs, logits, grads))

    # forward: read logits, write fg, area, pooled; backward: read logits and the three
    # gradients, write the logits' gradient.
    min_bytes = 2 * _size(logits, *grads) + _size(logits)
    return Case("foreground_epilogue", step, min_bytes)


def background_product_case(shapes: Shapes, dtype: torch.dtype, device: str) -> Case:
    b, k, s = shapes.batch, shapes.channels, shapes.map_size
    x4 = torch.randn(b, k, s, s, device=device, dtype=dtype)
    fg = torch.rand(b, 1, s, s, device=device, dtype=dtype).requires_grad_()
    grad = torch.randn(b, k, s, s, device=device, dtype=dtype)

    def step(op):
        out = op(x4, fg)
        return (out, *torch.autograd.grad(out, fg, grad))

    # forward: read x4 and fg, write out; backward: read grad and x4, write fg's gradient.
    min_bytes = 4 * _size(x4) + 2 * _size(fg)
    return Case("background_product", step, min_bytes)


def guided_score_case(shapes: Shapes, dtype: torch.dtype, device: str) -> Case:
    b, c, s = shapes.batch, shapes.classes, shapes.class_map_size
    maps = torch.randn(b, c, s, s, device=device, dtype=dtype).relu().requires_grad_()
    pooled = torch.rand(b, 1, s, s, device=device, dtype=dtype).requires_grad_()
    grad = torch.randn(b, c, device=device)

    def step(op):
        score = op(maps, pooled)
        return (score, *torch.autograd.grad(score, (maps, pooled), grad))

    # forward: read maps and pooled, write score; backward: read grad, maps and pooled, write
    # both gradients.
    min_bytes = 3 * _size(maps) + 3 * _size(pooled) + 2 * _size(grad)
    return Case("guided_score", step, min_bytes)


def accumulate_class_sums_case(shapes: Shapes, dtype: torch.dtype, device: str) -> Case:
    b, c, s = shapes.batch, shapes.classes, shapes.map_size
    sums = torch.zeros(c, s, s, device=device)
    counts = torch.zeros(c, device=device, dtype=torch.int64)
    maps = torch.rand(b, s, s, device=device, dtype=dtype)
    labels = torch.randint(0, c, (b,), device=device)

    def step(op):
        op(sums, counts, maps, labels)
        return ()  # in place and order-dependent across repeats: compared by the tests instead

    # read maps and labels, read-modify-write one float32 sum map and one count per sample.
    min_bytes = _size(maps, labels) + 2 * b * (s * s * sums.element_size() + counts.element_size())
    return Case("accumulate_class_sums", step, min_bytes)


def mean_map_l1_case(shapes: Shapes, dtype: torch.dtype, device: str) -> Case:
    b, c, s = shapes.batch, shapes.classes, shapes.map_size
    fg = torch.rand(b, 1, s, s, device=device, dtype=dtype).requires_grad_()
    mean_maps = torch.rand(c, s, s, device=device)  # a float32 buffer in every precision
    labels = torch.randint(0, c, (b,), device=device)
    grad = torch.rand((), device=device)

    def step(op):
        loss = op(fg, mean_maps, labels)
        return (loss, *torch.autograd.grad(loss, fg, grad))

    # forward and backward each read fg and the B gathered mean maps; backward writes fg's grad.
    min_bytes = 3 * _size(fg) + 2 * b * s * s * mean_maps.element_size() + 2 * _size(labels)
    return Case("mean_map_l1", step, min_bytes)


CASES = {
    "foreground_epilogue": foreground_epilogue_case,
    "background_product": background_product_case,
    "guided_score": guided_score_case,
    "accumulate_class_sums": accumulate_class_sums_case,
    "mean_map_l1": mean_map_l1_case,
}


DRY_RUN_SHAPES = Shapes(batch=2, classes=3, channels=8, map_size=4, class_map_size=2)


def time_ms(fn: Callable[[], object], warmup: int, iters: int, repeats: int = 5, cuda: bool = True) -> float:
    """Median over ``repeats`` of the mean time of ``iters`` back-to-back calls, CUDA events
    (``cuda=False``, dry runs: the host clock, once)."""
    for _ in range(warmup):
        fn()
    if not cuda:
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        return 1e3 * (time.perf_counter() - start) / iters
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        torch.cuda.synchronize()
        samples.append(start.elapsed_time(end) / iters)
    return statistics.median(samples)


def copy_bandwidth_gbps(warmup: int, iters: int, mib: int = 1024, device: str = "cuda") -> float:
    """Device-to-device ``copy_`` bandwidth (read + write bytes per second), in GB/s."""
    src = torch.empty(mib * 2**20, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), warmup, iters, cuda=device == "cuda")
    return 2 * src.numel() / (ms * 1e-3) / 1e9


def max_error(got: tuple, expected: tuple) -> float:
    """Largest absolute difference between matching tensors (0 when there is nothing to compare)."""
    return max((float((g.detach().float() - e.detach().float()).abs().max()) for g, e in zip(got, expected)),
               default=0.0)


def run_case(case: Case, dtype: str, implementations: dict[str, Callable], warmup: int, iters: int,
             copy_gbps: float, cuda: bool = True) -> dict:
    """Time every implementation of one case; returns one result row."""
    expected = case.step(implementations["eager"])
    row = {"op": case.op, "dtype": dtype, "min_bytes": case.min_bytes,
           "max_abs_error_vs_eager": max_error(case.step(implementations["triton"]), expected)}
    for name, op in implementations.items():
        row[f"{name}_ms"] = time_ms(lambda: case.step(op), warmup, iters, cuda=cuda)
    row["speedup_vs_eager"] = row["eager_ms"] / row["triton_ms"]
    row["speedup_vs_compile"] = row["compile_ms"] / row["triton_ms"]
    row["triton_gbps"] = case.min_bytes / (row["triton_ms"] * 1e-3) / 1e9
    row["triton_share_of_copy_bw"] = row["triton_gbps"] / copy_gbps
    return row


def print_table(rows: list[dict], copy_gbps: float, device_name: str) -> None:
    from rich.table import Table

    from wsol_fast.engine.progress import console

    table = Table(title=f"Triton kernels, forward + backward — {device_name}, copy {copy_gbps:.0f} GB/s")
    for column in ("op", "dtype", "eager ms", "compile ms", "triton ms", "x eager", "x compile",
                   "triton GB/s", "% copy BW", "max |err|"):
        table.add_column(column, justify="left" if column in ("op", "dtype") else "right")
    for r in rows:
        table.add_row(r["op"], r["dtype"], f"{r['eager_ms']:.4f}", f"{r['compile_ms']:.4f}",
                      f"{r['triton_ms']:.4f}", f"{r['speedup_vs_eager']:.2f}",
                      f"{r['speedup_vs_compile']:.2f}", f"{r['triton_gbps']:.0f}",
                      f"{100 * r['triton_share_of_copy_bw']:.0f}", f"{r['max_abs_error_vs_eager']:.2e}")
    console.print(table)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["fp32", "bf16"])
    parser.add_argument("--batch", type=int, default=Shapes.batch)
    parser.add_argument("--classes", type=int, default=Shapes.classes)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/kernels.json"))
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU, Triton interpreted")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.dry_run:
        os.environ["TRITON_INTERPRET"] = "1"  # read when the kernels are imported, below
    elif not torch.cuda.is_available():
        sys.exit("benchmarks/kernels.py needs a CUDA GPU (none is visible); nothing was timed.")
    from wsol_fast import kernels
    from wsol_fast.config import COMPILE_BACKEND
    from wsol_fast.kernels.utils import INTERPRETER
    from wsol_fast.ops import training_reference as reference
    if INTERPRETER and not args.dry_run:
        sys.exit("TRITON_INTERPRET is set: unset it to time compiled kernels.")

    device = "cpu" if args.dry_run else "cuda"
    shapes = DRY_RUN_SHAPES if args.dry_run else Shapes(batch=args.batch, classes=args.classes)
    device_name = "dry run on the CPU (Triton interpreted; times mean nothing)" if args.dry_run \
        else torch.cuda.get_device_name()
    copy_gbps = copy_bandwidth_gbps(args.warmup, args.iters, mib=1 if args.dry_run else 1024, device=device)
    rows = []
    for op in args.ops:
        implementations = {"eager": getattr(reference, op),
                           "compile": torch.compile(getattr(reference, op), dynamic=False,
                                                    backend="aot_eager" if args.dry_run else COMPILE_BACKEND),
                           "triton": getattr(kernels, op)}
        for dtype in args.dtypes:
            torch.manual_seed(0)
            case = CASES[op](shapes, DTYPES[dtype], device)
            rows.append(run_case(case, dtype, implementations, args.warmup, args.iters, copy_gbps,
                                 cuda=not args.dry_run))
            torch.cuda.empty_cache()
    print_table(rows, copy_gbps, device_name)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"device": device_name, "copy_bandwidth_gbps": copy_gbps, "shapes": asdict(shapes),
              "torch": torch.__version__, "warmup": args.warmup, "iters": args.iters, "rows": rows}
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
