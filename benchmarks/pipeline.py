"""End-to-end training throughput of ``launch/train.py``'s path against a BAS-style pipeline, in
one run: how many images per second reach the optimizer, and how long the step waits for data.

Ours: the synthetic set (generated on the fly, cached under /tmp) read by ``--loader`` (DALI or
the torch DataLoader, with the training augmentation) into the ``Trainer`` that
``launch/train.py`` builds (DeepSpeed engine, ``TrainStep`` with ``--precision``,
``--channels-last``, ``--compile``), one micro-batch per step as its epoch loop runs them.
Baseline: the same files through a torch DataLoader with the BAS code's transforms (PIL resize
to 256, random crop, flip, ``ToTensor``, ``Normalize``; the same worker count) feeding the
BAS-style step of ``benchmarks/bas_baseline.py`` (every class's generator map, deep-copied
background modules, per-sample loops) with SGD, under the same precision.

Each pipeline warms up (``--warmup`` steps, compilation included), then the two take turns
``--repeats`` times, each turn timing ``--steps`` steps, and each keeps its fastest turn (other
processes on a shared machine only ever slow a turn down): ``data`` is the host time spent waiting for the next batch and handing it to the device
(the step waits for the loader only then), the other stages are timed in place (CUDA events on a
GPU). One extra eager step per pipeline counts FLOPs (``FlopCounterMode``); peak memory is CUDA's
allocator peak or the sampled resident set. The goals printed at the end: data wait at most 5%
of wall time, and ours at least 0.95 x (baseline GFLOP / ours GFLOP) of the baseline's images/s
(the compute-bound limit). With no arguments the sizes follow the device (``SIZES``).

    python benchmarks/pipeline.py --out runs/bench/pipeline.json
"""
import argparse
import contextlib
import json
import math
import os
import platform
import sys
import tempfile
from pathlib import Path

import torch
import torchvision.transforms as T
from PIL import Image
from rich.table import Table
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bas_baseline import bas_early_loss, bas_forward  # noqa: E402
from throughput import PeakRSS, run_steps, synchronize  # noqa: E402

from wsol_fast.commands.train import train_config, train_parser  # noqa: E402
from wsol_fast.config import PRECISIONS, OptimConfig, RunConfig  # noqa: E402
from wsol_fast.data import WSOLDataset, scaled_resize  # noqa: E402
from wsol_fast.data.transforms import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from wsol_fast.engine.optim import build_optimizer  # noqa: E402
from wsol_fast.engine.progress import console, print_message  # noqa: E402
from wsol_fast.data import load_data_split  # noqa: E402
from wsol_fast.engine.trainer import EpochStats, Trainer  # noqa: E402
from wsol_fast.models import MobileNetBAS  # noqa: E402

SIZES = {"cuda": dict(classes=1000, width=1.0, image_size=224, batch_size=128, steps=30, warmup=5, repeats=2,
                      workers=8),
         "cpu": dict(classes=10, width=0.25, image_size=112, batch_size=16, steps=4, warmup=2, repeats=3, workers=2)}
DATA_WAIT_GOAL, FLOP_RATIO_GOAL = 0.05, 0.95


class BasTrainFiles(Dataset):
    """The BAS code's training input: PIL RGB, Resize((R, R)), RandomCrop(S), RandomHorizontalFlip,
    ToTensor, Normalize -> (image (3, S, S), label)."""

    def __init__(self, paths: list, labels, image_size: int):
        self.paths, self.labels = paths, labels
        self.transform = T.Compose([T.Resize((scaled_resize(image_size), scaled_resize(image_size))),
                                    T.RandomCrop(image_size), T.RandomHorizontalFlip(), T.ToTensor(),
                                    T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        with Image.open(self.paths[index]) as image:
            return self.transform(image.convert("RGB")), int(self.labels[index])


def endless(loader, device: torch.device, set_epoch=None):
    """(images, labels) on ``device`` from ``loader``, epoch after epoch."""
    epoch = 0
    while True:
        if set_epoch is not None:
            set_epoch(epoch)
        for batch in loader:
            yield batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
        epoch += 1


def build_ours(args, root: Path, out: Path):
    """The Trainer ``launch/train.py`` would build for these flags -> (trainer, step, batches)."""
    flags = ["--dataset", "synthetic", "--data-root", str(root), "--synthetic-classes", str(args.classes),
             "--synthetic-train-per-class", str(args.per_class), "--synthetic-test-per-class", "1",
             "--synthetic-image-size", str(args.synthetic_image_size), "--image-size", str(args.image_size),
             "--batch-size", str(args.batch_size), "--width", str(args.width), "--workers", str(args.workers),
             "--loader", args.loader, "--precision", args.precision, "--device", args.device, "--epochs", "1",
             "--out", str(out)]
    flags += ["--channels-last"] * args.channels_last + (["--compile"] if args.compile else [])
    cfg = train_config(train_parser().parse_args(flags))
    split = load_data_split(cfg, "train")
    cfg.model.num_classes = split.num_classes
    dataset = WSOLDataset(split, train=True, image_size=cfg.data.image_size, resize=cfg.data.resize,
                          seed=cfg.run.seed, train_crop=cfg.data.train_crop)
    trainer = Trainer(cfg, MobileNetBAS(split.num_classes, args.width), dataset)
    trainer.model.train()
    batches = endless(trainer.loader, trainer.device, trainer.loader.set_epoch)
    stats = EpochStats()

    def step(images, labels, eager=False):  # TrainStep's stages, then the trainer's loss sums
        stats.add((yield from trainer.training_step.stages(images, labels, eager)), len(labels))
    return trainer, step, batches, split


def build_baseline(args, split, device: torch.device):
    """BAS-style files -> DataLoader -> step of ``bas_baseline`` with SGD -> (step, batches)."""
    torch.manual_seed(0)
    model = MobileNetBAS(split.num_classes, args.width).to(device).train()
    optimizer = build_optimizer(model, OptimConfig())
    loader = DataLoader(BasTrainFiles(split.image_paths, split.labels, args.image_size), batch_size=args.batch_size,
                        shuffle=True, num_workers=args.workers, pin_memory=device.type == "cuda", drop_last=True,
                        persistent_workers=args.workers > 0)

    def step(images, labels, eager=False):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            total, _ = bas_early_loss(bas_forward(model, images, labels), labels)
        yield "forward"
        total.backward()
        yield "backward"
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        yield "optimizer"
    return step, endless(loader, device)


def warm_up(step, batches, args, device: torch.device) -> float:
    """``args.warmup`` steps, then one FLOP-counting eager step -> GFLOP per image."""
    for _ in range(args.warmup):
        for _ in step(*next(batches)):
            pass
    images, labels = next(batches)
    counter = FlopCounterMode(display=False)
    with counter:
        for _ in step(images, labels, eager=True):
            pass
    synchronize(device)
    return counter.get_total_flops() / len(labels) / 1e9


def timed_turn(step, batches, args, device: torch.device) -> dict:
    """``args.steps`` timed steps: images/s, data-wait fraction, ms per stage, peak memory."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    memory = PeakRSS() if device.type != "cuda" else contextlib.nullcontext()
    with memory:
        timed = run_steps(step, batches, args.steps, device)
    wall = timed["wall_s"]
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else memory.bytes
    stages = {name: seconds for name, seconds in timed["stages_s"].items() if name != "post"}
    return {"images_per_s": args.steps * args.batch_size / wall, "wall_s": wall,
            "data_wait_fraction": stages["data"] / wall,
            "stage_ms": {name: 1e3 * seconds / args.steps for name, seconds in stages.items()},
            "peak_memory_mb": peak / 2**20}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    for name in SIZES["cpu"]:
        parser.add_argument(f"--{name.replace('_', '-')}", type=float if name == "width" else int,
                            help=f"default per device: {SIZES['cuda'][name]} on CUDA, {SIZES['cpu'][name]} on the CPU")
    parser.add_argument("--loader", choices=("dali", "torch"), default="torch")
    parser.add_argument("--precision", choices=PRECISIONS, default=RunConfig.precision)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile of forward + loss (ours)")
    parser.add_argument("--synthetic-image-size", type=int, default=256, help="JPEG side of the generated set")
    parser.add_argument("--per-class", type=int,
                        help="generated images per class (default: just enough for the warm-up and timed steps)")
    parser.add_argument("--data-root", type=Path, help="default /tmp/wsol_pipeline_<classes>x<per class>_<side>")
    parser.add_argument("--out", type=Path, help="JSON output path")
    args = parser.parse_args(argv)
    kind = torch.device(args.device).type
    for name, value in SIZES["cuda" if kind == "cuda" else "cpu"].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.per_class is None:
        needed = (args.warmup + args.steps * args.repeats + 1) * args.batch_size
        args.per_class = max(1, math.ceil(needed / args.classes))
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    root = args.data_root or Path(tempfile.gettempdir()) / (
        f"wsol_pipeline_{args.classes}x{args.per_class}_{args.synthetic_image_size}")
    print_message(f"{args.device}: {args.classes} classes x {args.per_class} JPEGs of {args.synthetic_image_size} px "
                  f"in {root}, {args.image_size} px, batch {args.batch_size}, width {args.width}, {args.loader} "
                  f"loader, {args.workers} workers, {args.precision}"
                  f"{', channels_last' if args.channels_last else ''}{', compiled' if args.compile else ''}; "
                  f"{args.warmup} warm-up + {args.steps} timed steps each")
    with tempfile.TemporaryDirectory() as out:
        trainer, ours_step, ours_batches, split = build_ours(args, root, Path(out))
        base_step, base_batches = build_baseline(args, split, trainer.device)
        pipelines = {"ours": (ours_step, ours_batches), "baseline": (base_step, base_batches)}
        flops = {name: warm_up(*pipeline, args, device) for name, pipeline in pipelines.items()}
        turns = {name: [] for name in pipelines}
        for _ in range(args.repeats):  # alternating turns; each pipeline keeps its fastest
            for name, pipeline in pipelines.items():
                turns[name].append(timed_turn(*pipeline, args, device))
        rows = {name: {**max(measured, key=lambda turn: turn["images_per_s"]), "gflop_per_image": flops[name],
                       "all_images_per_s": [turn["images_per_s"] for turn in measured]}
                for name, measured in turns.items()}
    limit = FLOP_RATIO_GOAL * rows["baseline"]["gflop_per_image"] / rows["ours"]["gflop_per_image"]
    speedup = rows["ours"]["images_per_s"] / rows["baseline"]["images_per_s"]
    report = {"benchmark": "pipeline", "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.platform()}",
              "torch": torch.__version__, "rows": rows, "speedup": speedup, "speedup_goal": limit,
              "data_wait_goal": DATA_WAIT_GOAL,
              "goals_met": {"data_wait": rows["ours"]["data_wait_fraction"] <= DATA_WAIT_GOAL,
                            "speedup": speedup >= limit}}
    table = Table(title="End-to-end training: loader -> step, ours against a BAS-style pipeline")
    for column in ("pipeline", "images/s", "data wait", "data ms", "forward ms", "backward ms", "optimizer ms",
                   "GFLOP/image", "peak MB"):
        table.add_column(column, justify="left" if column == "pipeline" else "right", no_wrap=True)
    for name, row in rows.items():
        ms = row["stage_ms"]
        table.add_row(name, f"{row['images_per_s']:.1f}", f"{100 * row['data_wait_fraction']:.1f}%",
                      f"{ms['data']:.1f}", f"{ms['forward']:.1f}", f"{ms['backward']:.1f}", f"{ms['optimizer']:.1f}",
                      f"{row['gflop_per_image']:.2f}", f"{row['peak_memory_mb']:.0f}")
    console.print(table)
    print_message(f"ours / baseline images/s: {speedup:.2f}x (goal: >= {limit:.2f}x, 0.95 x the FLOP ratio) "
                  f"{'met' if report['goals_met']['speedup'] else 'NOT met'}; data wait "
                  f"{100 * rows['ours']['data_wait_fraction']:.1f}% (goal: <= {100 * DATA_WAIT_GOAL:.0f}%) "
                  f"{'met' if report['goals_met']['data_wait'] else 'NOT met'}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
        print_message(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
