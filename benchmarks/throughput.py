"""End-to-end throughput of training and inference phases, fused path against the reference path
and a BAS-style baseline, measured in one run.

Phases (``--phase``, several allowed):
  early    one training step of the early stage: forward + loss + backward + SGD step
           (``build_optimizer``: the BAS recipe), B images.
  late     the same with the class-mean-map L1 term (random fixed mean maps).
  meanmap  the mean-map pass: eval-mode forward (no grad) of the label's foreground map, per-class
           scatter-add of the maps.
  eval     evaluation (BAS protocol): forward, label's map resized to the input, percentile-max
           normalization (p = 99), largest-component box at one threshold.
Paths (``--path``, several allowed; default all three):
  fused     ``wsol_fast.engine.step.TrainStep`` (the step ``launch/train.py`` runs, here driving
            the model and SGD directly instead of a DeepSpeed engine): ops dispatched (Triton kernels on CUDA, the
            C++ extension for evaluation), plus ``--channels-last`` and ``--compile`` (training
            phases) when given.
  reference the same model and losses with ``WSOL_FAST_OPS=reference`` (plain PyTorch ops), NCHW,
            never compiled.
  baseline  BAS-STYLE BASELINE (``benchmarks/bas_baseline.py``): all C generator maps, deep-copied
            background modules, per-sample Python loops, as the public BAS code computes it.
``--precision bf16`` autocasts forward + loss of every path (CPU autocast on the CPU).

Each path warms up (``--warmup`` steps; compilation happens there), then the paths take turns
``--repeats`` times, each turn timing ``--steps`` steps; a row keeps its fastest turn (other
processes on a shared machine only ever slow a turn down). ``img/CPU-s`` divides by this
process's CPU time instead (``time.process_time``, best turn): with ``--threads 1`` on a machine
other jobs keep busy, it measures the work rather than the share of the cores the process got,
and its ratios are the steadier ones. A step's stages are timed in place:
on CUDA with events between stages (no host synchronization inside the step) and one
synchronize at the end of a turn; on the CPU with the host clock. ``data`` is the host time
spent waiting for the next batch and copying it to the device. FLOPs per image come from
``torch.utils.flop_counter.FlopCounterMode`` over one extra step (eager), and peak memory from
that same step: CUDA ``max_memory_allocated`` (everything allocated, weights and optimizer
state included); CPU the peak resident set size above the one before the step, sampled every
millisecond from ``/proc/self/statm`` (``resource`` ru_maxrss where /proc is missing: a
process-wide high-water mark, so only the first path to reach it shows it). The achieved
TFLOP/s is compared with a square matmul in the same precision measured in the same run (best
of 10; on a machine other jobs load, the two see different shares of the cores and the
fraction can even pass 100%).

    python benchmarks/throughput.py --device cpu --phase early --classes 200 --batch-size 8 \\
        --image-size 224 --steps 3 --repeats 3 --out runs/bench/throughput_cpu.json
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import resource
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.table import Table
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bas_baseline import (  # noqa: E402
    bas_accumulate_class_sums,
    bas_early_loss,
    bas_eval_forward,
    bas_forward,
    bas_late_loss,
)

from wsol_fast import ops  # noqa: E402
from wsol_fast.config import COMPILE_BACKEND, OptimConfig  # noqa: E402
from wsol_fast.data import SyntheticSpec, WSOLDataset, load_split, make_loader, scaled_resize  # noqa: E402
from wsol_fast.engine.evaluate import localization_maps  # noqa: E402
from wsol_fast.engine.progress import console  # noqa: E402
from wsol_fast.engine.optim import build_optimizer  # noqa: E402
from wsol_fast.engine.step import PlainEngine, StepOptions, TrainStep  # noqa: E402
from wsol_fast.models import MobileNetBAS  # noqa: E402
from wsol_fast.ops import eval_reference  # noqa: E402
from wsol_fast.ops import evaluation as eval_ops  # noqa: E402

PHASES = ("early", "late", "meanmap", "eval")
PATHS = ("fused", "reference", "baseline")
STAGES = ("data", "forward", "backward", "optimizer", "post")
EVAL_NORM, EVAL_THRESHOLD = "percentile:99", 0.5


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def forced_ops(backend: str | None):
    """``WSOL_FAST_OPS=backend`` inside the block (unchanged when None), restored after."""
    if backend is None:
        yield
        return
    before = os.environ.get("WSOL_FAST_OPS")
    os.environ["WSOL_FAST_OPS"] = backend
    try:
        yield
    finally:
        if before is None:
            del os.environ["WSOL_FAST_OPS"]
        else:
            os.environ["WSOL_FAST_OPS"] = before


# -- data ----------------------------------------------------------------------------------

def memory_batches(args, device: torch.device):
    """Endless (images, labels) from two random batches already on the device."""
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=generator).to(device),
                torch.randint(0, args.classes, (args.batch_size,), generator=generator).to(device))
               for _ in range(2)]
    while True:
        yield from batches


def loader_batches(args, device: torch.device, train: bool):
    """Endless (images, labels) from ``--loader`` (dali|torch) over ``--dataset``, on the device."""
    spec = SyntheticSpec(num_classes=args.synthetic_classes, train_per_class=args.synthetic_train_per_class,
                         test_per_class=1, image_size=args.synthetic_image_size)
    root = args.data_root or Path(f"/tmp/wsol_bench_synthetic_{args.synthetic_image_size}")
    split = load_split(args.dataset, root, "train", spec if args.dataset == "synthetic" else None)
    if split.num_classes > args.classes:
        raise ValueError(f"--dataset {args.dataset} at {root} has {split.num_classes} classes, more than "
                         f"--classes {args.classes}")
    dataset = WSOLDataset(split, train=train, image_size=args.image_size, resize=scaled_resize(args.image_size))
    loader = make_loader(dataset, args.batch_size, loader=args.loader, shuffle=train, drop_last=True,
                         workers=args.workers, device=str(device))
    if len(loader) == 0:
        raise ValueError(f"{len(split)} images at {root}: not one batch of {args.batch_size}")
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        for images, labels, _ in loader:
            yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        epoch += 1


# -- one step of each (phase, path), as a generator yielding the name of each finished stage -----

def make_step(phase: str, path: str, model: MobileNetBAS, args, mean_maps: torch.Tensor):
    """``step(images, labels, eager=False)``: a generator that does one step of ``phase`` on
    ``path`` and yields each stage's name when that stage's work is issued; ``eager`` skips
    ``torch.compile`` (for FLOP counting)."""
    autocast = dict(dtype=torch.bfloat16, enabled=args.precision == "bf16")
    device_type = mean_maps.device.type
    fused = path == "fused"
    if phase in ("early", "late"):
        optimizer = build_optimizer(model, OptimConfig())
        if path == "baseline":
            def baseline_step(images, labels, eager=False):
                with torch.autocast(device_type, **autocast):
                    out = bas_forward(model, images, labels)
                    total, _ = (bas_early_loss(out, labels) if phase == "early"
                                else bas_late_loss(out, labels, mean_maps))
                yield "forward"
                total.backward()
                yield "backward"
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                yield "optimizer"
            return baseline_step
        options = StepOptions(stage=phase, precision=args.precision, channels_last=fused and args.channels_last,
                              compile=COMPILE_BACKEND if fused and args.compile else None)
        train_step = TrainStep(PlainEngine(model, optimizer), options, mean_maps)

        return train_step.stages

    model.eval()
    if fused and args.channels_last:
        model.to(memory_format=torch.channels_last)
    sums = torch.zeros_like(mean_maps)
    counts = torch.zeros(len(mean_maps), dtype=torch.int64, device=mean_maps.device)

    @torch.no_grad()
    def inference_step(images, labels, eager=False):
        if fused and args.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type, **autocast):
            if path == "baseline":
                _, maps = bas_eval_forward(model, images, labels)
            elif phase == "meanmap":
                maps = model(images, labels, background=False).fg_map[:, 0]
            else:
                _, maps = localization_maps(model, images, labels, "bas", "gt")
        yield "forward"
        if phase == "meanmap":
            accumulate = bas_accumulate_class_sums if path == "baseline" else ops.accumulate_class_sums
            accumulate(sums, counts, maps.float(), labels)
        elif path == "baseline":  # one image at a time, the reference ops
            for one in maps.float():
                resized = F.interpolate(one[None, None], size=images.shape[-2:], mode="bilinear",
                                        align_corners=False)[0]
                normalized = eval_reference.normalize(resized, EVAL_NORM)
                eval_reference.largest_component_boxes(normalized, [EVAL_THRESHOLD], empty="full")
        else:
            eval_ops.largest_component_boxes(eval_ops.normalize(maps, EVAL_NORM), [EVAL_THRESHOLD], empty="full")
        yield "post"
    return inference_step


# -- timing ----------------------------------------------------------------------------------

class StageClock:
    """Stage boundaries of a run of steps: CUDA events (read after one synchronize) or host time."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.pending = []  # (stage, start event, end event)

    def mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def add(self, stage: str, start, end) -> None:
        if self.cuda:
            self.pending.append((stage, start, end))
        else:
            self.seconds[stage] += end - start

    def totals(self) -> dict:
        """Seconds per stage (call after synchronizing)."""
        for stage, start, end in self.pending:
            self.seconds[stage] += start.elapsed_time(end) / 1e3
        self.pending = []
        return self.seconds


def run_steps(step, batches, steps: int, device: torch.device) -> dict:
    """Time ``steps`` steps: wall seconds, this process's CPU seconds, and seconds per stage
    (data on the host clock)."""
    clock = StageClock(device)
    synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(steps):
        waited = time.perf_counter()
        images, labels = next(batches)
        clock.seconds["data"] += time.perf_counter() - waited
        before = clock.mark()
        for stage in step(images, labels):
            after = clock.mark()
            clock.add(stage, before, after)
            before = after
    synchronize(device)
    wall = time.perf_counter() - start
    return {"wall_s": wall, "cpu_s": time.process_time() - cpu_start, "stages_s": clock.totals()}


class PeakRSS:
    """Peak resident set size (bytes) above the one at entry, sampled every millisecond from
    /proc/self/statm in a thread; ``resource`` ru_maxrss (process high-water mark) without /proc."""

    STATM = Path("/proc/self/statm")

    def __enter__(self):
        self.kind = "cpu-rss-sampled" if self.STATM.exists() else "cpu-ru_maxrss-delta"
        self.start = self.peak = self._rss()
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _rss(self) -> int:
        if self.STATM.exists():
            return int(self.STATM.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, self._rss())
        self.bytes = self.peak - self.start


def probe(step, batches, device: torch.device) -> dict:
    """FLOPs (FlopCounterMode, eager) and peak memory of one step."""
    images, labels = next(batches)
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        memory = contextlib.nullcontext()
    else:
        memory = PeakRSS()
    counter = FlopCounterMode(display=False)
    with memory, counter:
        for _ in step(images, labels, eager=True):
            pass
        synchronize(device)
    if device.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(device), "cuda-max_memory_allocated"
    else:
        peak, kind = memory.bytes, memory.kind
    return {"flops_per_image": counter.get_total_flops() / len(labels), "peak_memory_mb": peak / 2**20,
            "memory_kind": kind}


def matmul_peak_tflops(device: torch.device, precision: str) -> float:
    """Best TFLOP/s of 10 square matmuls in ``precision`` (2048 on the CPU, 8192 on CUDA)."""
    n = 8192 if device.type == "cuda" else 2048
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    best = float("inf")
    for _ in range(10):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e12


# -- driver ----------------------------------------------------------------------------------

# Sizes for the flags not given, by device: the full measurement on a GPU; on a CPU a small model
# that ends within about 3 minutes on 2 cores (the paper's sizes take hours there).
SIZES = {"cuda": dict(batch_size=32, image_size=224, classes=200, width=1.0, steps=10, warmup=2, repeats=3),
         "cpu": dict(batch_size=4, image_size=96, classes=20, width=0.25, steps=2, warmup=1, repeats=2)}

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    parser.add_argument("--dataset", default="synthetic", choices=("synthetic", "cub", "imagenet"),
                        help="images for --loader dali|torch (memory: random tensors)")
    parser.add_argument("--data-root", type=Path, help="dataset root (synthetic: generated there when absent; "
                                                       "default /tmp/wsol_bench_synthetic_<jpeg side>)")
    parser.add_argument("--synthetic-image-size", type=int, default=300)
    parser.add_argument("--synthetic-classes", type=int, default=10)
    parser.add_argument("--synthetic-train-per-class", type=int, default=30)
    parser.add_argument("--phase", nargs="+", choices=PHASES, default=list(PHASES))
    parser.add_argument("--path", nargs="+", choices=PATHS, default=list(PATHS))
    sized = "default: by device, see SIZES"
    parser.add_argument("--batch-size", type=int, help=sized)
    parser.add_argument("--image-size", type=int, help=sized)
    parser.add_argument("--classes", type=int, help=sized)
    parser.add_argument("--width", type=float, help=f"MobileNet width multiplier ({sized})")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--loader", choices=("dali", "torch", "memory"), default="memory")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="loader workers/threads")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 avoids stalls on a loaded machine)")
    parser.add_argument("--steps", type=int, help=f"timed steps per turn ({sized})")
    parser.add_argument("--warmup", type=int, help=f"untimed steps per path before timing ({sized})")
    parser.add_argument("--repeats", type=int, help=f"turns per path, the fastest kept ({sized})")
    parser.add_argument("--channels-last", action="store_true", help="fused path: channels_last memory format")
    parser.add_argument("--compile", action="store_true", help="fused path: torch.compile of forward + loss")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/throughput.json"), help="JSON output path")
    args = parser.parse_args(argv)
    chosen = {name: value for name, value in SIZES[args.device].items() if getattr(args, name) is None}
    for name, value in chosen.items():
        setattr(args, name, value)
    if chosen and args.device == "cpu":
        given = " ".join(f"--{name.replace('_', '-')} {value}" for name, value in chosen.items())
        print(f"on the CPU: small sizes chosen so that the run ends in minutes ({given}); for the paper's "
              "sizes pass --batch-size 8 --image-size 224 --classes 200 --width 1.0 (hours on 2 cores)", flush=True)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    for name in ("batch_size", "image_size", "classes", "steps", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.image_size % 16:
        parser.error(f"--image-size must be a multiple of 16, got {args.image_size}")
    return args


def measure_phase(phase: str, args, device: torch.device, model: MobileNetBAS) -> list[dict]:
    """Rows of one phase, one per path, with ratios against the baseline and the reference."""
    map_side = args.image_size // 8
    mean_maps = torch.rand(args.classes, map_side, map_side, generator=torch.Generator().manual_seed(1)).to(device)
    train = phase in ("early", "late")
    batches = memory_batches(args, device) if args.loader == "memory" else loader_batches(args, device, train)
    steps = {path: make_step(phase, path, copy.deepcopy(model), args, mean_maps) for path in args.path}
    backends = {"fused": None, "reference": "reference", "baseline": "reference"}
    turns = {path: [] for path in args.path}
    probes = {}
    for path, step in steps.items():
        print(f"{phase}: {path} path, warm-up and probe", flush=True)
        with forced_ops(backends[path]):
            for _ in range(args.warmup):
                run_steps(step, batches, 1, device)
            probes[path] = probe(step, batches, device)
    for turn in range(args.repeats):
        for path, step in steps.items():
            print(f"{phase}: {path} path, turn {turn + 1}/{args.repeats}", flush=True)
            with forced_ops(backends[path]):
                turns[path].append(run_steps(step, batches, args.steps, device))
    rows = []
    for path in args.path:
        best = min(turns[path], key=lambda turn: turn["wall_s"])
        images = args.steps * args.batch_size
        rate = images / best["wall_s"]
        rows.append({"phase": phase, "path": path, "images_per_s": rate,
                     "all_images_per_s": [images / turn["wall_s"] for turn in turns[path]],
                     "step_ms": 1e3 * best["wall_s"] / args.steps,
                     "images_per_cpu_s": images / min(turn["cpu_s"] for turn in turns[path]),
                     "stages_ms": {stage: 1e3 * s / args.steps for stage, s in best["stages_s"].items()},
                     "data_wait_share": best["stages_s"]["data"] / best["wall_s"],
                     **probes[path], "tflops": probes[path]["flops_per_image"] * rate / 1e12})
    for key, suffix in (("images_per_s", ""), ("images_per_cpu_s", "_cpu_time")):
        by_path = {row["path"]: row[key] for row in rows}
        for row in rows:
            for other in ("baseline", "reference"):
                if other in by_path:
                    row[f"vs_{other}{suffix}"] = row[key] / by_path[other]
    return rows


def print_table(rows: list[dict], args, peak_tflops: float) -> None:
    table = Table(title=f"{args.device}, C={args.classes}, batch {args.batch_size}, {args.image_size} px, width "
                        f"{args.width}, {args.precision}, loader {args.loader}, best of {args.repeats} x "
                        f"{args.steps} steps; matmul peak {peak_tflops:.2f} TFLOP/s")
    columns = ("phase", "path", "images/s", "x baseline", "x reference", "img/CPU-s", "x baseline CPU-t",
               "step ms", *(f"{s} ms" for s in STAGES),
               "peak MB", "GFLOP/img", "TFLOP/s", "% peak")
    for column in columns:
        table.add_column(column, justify="left" if column in ("phase", "path") else "right", no_wrap=True)
    ratio = lambda row, key: f"{row[key]:.2f}" if key in row else "-"  # noqa: E731
    for row in rows:
        table.add_row(row["phase"], row["path"], f"{row['images_per_s']:.3g}", ratio(row, "vs_baseline"),
                      ratio(row, "vs_reference"), f"{row['images_per_cpu_s']:.3g}",
                      ratio(row, "vs_baseline_cpu_time"), f"{row['step_ms']:.1f}",
                      *(f"{row['stages_ms'][s]:.1f}" for s in STAGES), f"{row['peak_memory_mb']:.0f}",
                      f"{row['flops_per_image'] / 1e9:.2f}", f"{row['tflops']:.3f}",
                      f"{100 * row['tflops'] / peak_tflops:.1f}")
    console.print(table)


def main(argv=None) -> dict:
    """Run the benchmark; returns the report written to ``--out``."""
    args = parse_args(argv)
    threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        return run(args, sys.argv[1:] if argv is None else list(argv))
    finally:
        torch.set_num_threads(threads)


def run(args: argparse.Namespace, argv: list[str]) -> dict:
    """The benchmark of parsed ``args`` (from ``argv``): measure, print, write ``args.out``;
    returns the report."""
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    model = MobileNetBAS(args.classes, args.width).to(device).train()
    load_before = os.getloadavg()
    rows = []
    for phase in args.phase:
        rows.extend(measure_phase(phase, args, device, model))
    peak_tflops = matmul_peak_tflops(device, args.precision)
    for row in rows:
        row["fraction_of_matmul_peak"] = row["tflops"] / peak_tflops
    print_table(rows, args, peak_tflops)
    report = {"benchmark": "throughput", "command": " ".join(["python benchmarks/throughput.py", *argv]), "args": {
                  k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
              or platform.machine(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "load_average_before": load_before, "load_average_after": os.getloadavg(),
              "matmul_peak_tflops": peak_tflops, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    console.print(f"load average before {load_before[0]:.2f}, after {report['load_average_after'][0]:.2f}; "
                  f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
