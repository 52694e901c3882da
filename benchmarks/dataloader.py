"""Input-pipeline benchmark: images/s of the DALI loader (CPU mode here, GPU decoding on a CUDA
``--device``) against the torch DataLoader on the same files, with as many DALI threads as
DataLoader worker processes, in one run. Phases: "train" (BAS augmentation: resize, random crop,
flip), "resized" (random resized crop, ROI decoding in DALI) and "eval" (resize, center crop).

Each measurement builds the loader, reads ``--warmup`` epochs (page cache, worker start-up), then
times ``--epochs`` whole epochs, a fresh DALI pipeline or DataLoader per epoch as in training; the
batches are only received, not used. The two loaders alternate ``--repeats`` times and each row
keeps its best rate (other processes on a shared machine only ever slow a run down). Ratios are
against the torch DataLoader of the same phase. Prints a table and writes JSON (``--out``).

Then the host cost per sample of the training augmentation parameters as DALI's
``external_source`` receives them, on the training process's thread (``DaliLoader.params_source``:
the epoch's arrays drawn at once from (seed, epoch, index), then one slice per batch), against the per-sample way it replaced (a
``torch.Generator`` seeded from a ``SeedSequence`` for every sample), over ``--draw-samples``
samples in batches of ``--batch-size``, best of ``--repeats``. ``--draws-only`` skips the loaders.

    python benchmarks/dataloader.py --out runs/bench/dataloader.json
"""
import argparse
import json
import math
import os
import platform
import time
from types import SimpleNamespace
from pathlib import Path

import torch
from rich.table import Table

import numpy as np

from wsol_fast.data import SyntheticSpec, WSOLDataset, derive_seed, load_split, make_loader, scaled_resize
from wsol_fast.data.dali_loader import DaliLoader
from wsol_fast.engine.progress import console

PHASES = {"train": dict(train=True, train_crop="bas"), "resized": dict(train=True, train_crop="random-resized"),
          "eval": dict(train=False)}


def time_epochs(loader, epochs: int, warmup: int) -> tuple[float, int]:
    """(seconds, images) of ``epochs`` whole epochs after ``warmup`` untimed ones."""
    for epoch in range(warmup):
        loader.set_epoch(epoch)
        for _ in loader:
            pass
    images, start = 0, time.perf_counter()
    for epoch in range(warmup, warmup + epochs):
        loader.set_epoch(epoch)
        for batch in loader:
            images += len(batch[2])
    return time.perf_counter() - start, images


def per_sample_generator_draws(dataset: WSOLDataset, indices: np.ndarray, epoch: int) -> list:
    """Baseline: the per-sample draws this project made before (one seeded torch.Generator each)."""
    params = []
    span = dataset.resize - dataset.image_size + 1
    for index in indices.tolist():
        generator = torch.Generator().manual_seed(derive_seed(dataset.seed, epoch, index))
        if dataset.train_crop == "bas":
            params.append((*torch.randint(0, span, (2,), generator=generator).tolist(),
                           bool(torch.rand((), generator=generator) < 0.5)))
        else:
            params.append((torch.rand(20, generator=generator, dtype=torch.float64).tolist(),
                           torch.randint(0, 1 << 16, (2,), generator=generator).tolist(),
                           bool(torch.rand((), generator=generator) < 0.5)))
    return params


def host_draw_cost(dataset: WSOLDataset, batch_size: int, samples: int, repeats: int) -> dict:
    """Microseconds per sample of DALI's parameter source over one epoch of ``samples`` (drawing
    included) and of the per-sample baseline."""
    loader = DaliLoader(dataset, batch_size)
    order = np.random.default_rng(0).permutation(max(samples, batch_size)).astype(np.int64)
    batches = [order[start:start + batch_size] for start in range(0, len(order) - batch_size + 1, batch_size)]
    drawn = sum(len(batch) for batch in batches)
    best = {"ours": math.inf, "per_sample_generator": math.inf}
    for _ in range(repeats):
        start = time.perf_counter()
        source = loader.params_source(order[:drawn])
        for iteration in range(len(batches)):
            source(SimpleNamespace(iteration=iteration))
        best["ours"] = min(best["ours"], time.perf_counter() - start)
        start = time.perf_counter()
        for batch in batches[:max(1, len(batches) // 20)]:  # the baseline is slow: a twentieth
            per_sample_generator_draws(dataset, batch, 0)
        best["per_sample_generator"] = min(best["per_sample_generator"],
                                           (time.perf_counter() - start) * len(batches) / max(1, len(batches) // 20))
    return {name: 1e6 * seconds / drawn for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, help="synthetic set, generated there when absent "
                                                       "(default /tmp/wsol_bench_synthetic_<jpeg side>)")
    parser.add_argument("--synthetic-image-size", type=int, default=300, help="JPEG side of the synthetic set")
    parser.add_argument("--synthetic-classes", type=int, default=10)
    parser.add_argument("--synthetic-train-per-class", type=int, default=30)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="DALI threads = DataLoader worker processes (default: all cores)")
    parser.add_argument("--phases", nargs="+", choices=tuple(PHASES), default=list(PHASES))
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per row")
    parser.add_argument("--warmup", type=int, default=1, help="untimed epochs per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="alternating measurements per loader")
    parser.add_argument("--device", default="cpu", help="cuda: DALI decodes on the GPU (device='mixed')")
    parser.add_argument("--out", type=Path, default=None, help="JSON output path")
    parser.add_argument("--draw-samples", type=int, default=200_000, help="samples of the host-draw measurement")
    parser.add_argument("--draws-only", action="store_true", help="only the host cost of augmentation parameters")
    args = parser.parse_args()

    spec = SyntheticSpec(num_classes=args.synthetic_classes, train_per_class=args.synthetic_train_per_class,
                         test_per_class=1, image_size=args.synthetic_image_size)
    root = args.data_root or Path(f"/tmp/wsol_bench_synthetic_{args.synthetic_image_size}")
    split = load_split("synthetic", root, "train", spec)
    rows, draws = [], []
    for phase in args.phases:
        dataset = WSOLDataset(split, image_size=args.image_size, resize=scaled_resize(args.image_size), seed=0,
                              **PHASES[phase])
        if dataset.train:
            cost = host_draw_cost(dataset, args.batch_size, args.draw_samples, args.repeats)
            draws.append({"phase": phase, "us_per_sample": cost["ours"],
                          "per_sample_generator_us_per_sample": cost["per_sample_generator"]})
        if args.draws_only:
            continue
        rates, names = {"torch": [], "dali": []}, {}
        for _ in range(args.repeats):
            for kind in rates:
                loader = make_loader(dataset, args.batch_size, loader=kind, shuffle=dataset.train,
                                     workers=args.workers, device=args.device)
                seconds, images = time_epochs(loader, args.epochs, args.warmup)
                rates[kind].append(images / seconds)
                names[kind] = str(loader)
        for kind, measured in rates.items():
            rows.append({"phase": phase, "loader": names[kind], "kind": kind, "workers": args.workers,
                         "images_per_s": max(measured), "all_images_per_s": measured,
                         "vs_torch": max(measured) / max(rates["torch"])})

    table = Table(title=f"{len(split)} JPEGs of {args.synthetic_image_size} px -> {args.image_size} px, "
                        f"batch {args.batch_size}, {args.workers} workers/threads, best of {args.repeats} x "
                        f"{args.epochs} epochs")
    for column in ("phase", "loader", "images/s", "ms/image", "x torch"):
        table.add_column(column, justify="left" if column in ("phase", "loader") else "right", no_wrap=True)
    for row in rows:
        table.add_row(row["phase"], row["loader"], f"{row['images_per_s']:.0f}",
                      f"{1e3 / row['images_per_s']:.2f}", f"{row['vs_torch']:.2f}")
    if rows:
        console.print(table)
    draw_table = Table(title=f"Host cost of training augmentation parameters (DALI external_source, training thread), "
                             f"{args.draw_samples} samples in batches of {args.batch_size}, best of {args.repeats}")
    for column in ("phase", "us/sample", "per-sample generator us/sample", "x faster"):
        draw_table.add_column(column, justify="left" if column == "phase" else "right", no_wrap=True)
    for row in draws:
        draw_table.add_row(row["phase"], f"{row['us_per_sample']:.3f}", f"{row['per_sample_generator_us_per_sample']:.1f}",
                           f"{row['per_sample_generator_us_per_sample'] / row['us_per_sample']:.0f}")
    if draws:
        console.print(draw_table)

    if args.out is not None:
        import nvidia.dali

        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = {"benchmark": "dataloader", "images": len(split), "jpeg_size": args.synthetic_image_size,
                  "image_size": args.image_size, "batch_size": args.batch_size, "workers": args.workers,
                  "epochs": args.epochs, "repeats": args.repeats,
                  "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                  "torch": torch.__version__, "dali": nvidia.dali.__version__, "device": args.device,
                  "rows": rows, "host_draws": draws}
        args.out.write_text(json.dumps(report, indent=2))
        console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
