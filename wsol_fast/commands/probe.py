"""Probe a checkpoint's background-suppression objective: S_bg / S when the background branch
sees x4 with the model's own foreground map removed, with the ground-truth boxes (dilated by
0..3 feature cells) removed, with nothing and with everything removed (``wsol_fast.probe``).
A BAS model whose own map beats the ground-truth boxes here has found an off-object minimum.
``wsol-fast probe`` (``launch/probe_background.py``)."""
import argparse
import json
from pathlib import Path

from rich.table import Table

from ..config import TrainConfig
from ..data import WSOLDataset, load_data_split
from ..engine.progress import console
from ..fields import positive_int
from ..models.restore import model_from_checkpoint
from ..probe import probe_background
from .common import run_command


def probe_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--split", choices=("train", "test"), default="train")
    parser.add_argument("--images", type=positive_int, default=64, help="evenly spread over the split")
    parser.add_argument("--bn", choices=("batch", "running"), default="batch",
                        help="background-branch BatchNorm statistics (training uses the batch's)")
    parser.add_argument("--out", type=Path, help="JSON output")
    return parser


def probe_main(argv: list[str] | None = None) -> int:
    """``wsol-fast probe``; returns the exit status."""
    return run_command(_probe, probe_parser().parse_args(argv))


def _probe(args: argparse.Namespace) -> int:
    model, state = model_from_checkpoint(args.checkpoint)
    cfg = TrainConfig.from_dict(state["config"])
    dataset = WSOLDataset(load_data_split(cfg, args.split), train=False, image_size=cfg.data.image_size,
                          resize=cfg.data.resize)
    step = max(1, len(dataset) // args.images)
    indices = list(range(0, len(dataset), step))[: args.images]
    results = probe_background(model, dataset, indices, args.bn)
    table = Table(title=f"S_bg / S on {len(indices)} {args.split} images, {args.bn}-statistics BatchNorm")
    for column in ("mask removed from x4", "mean r", "median r", "share S_bg >= S", "mask area"):
        table.add_column(column, justify="left" if column.startswith("mask removed") else "right")
    for row in results:
        table.add_row(row.name, f"{row.mean_ratio:.3f}", f"{row.median_ratio:.3f}",
                      f"{row.share_at_least_one:.2f}", f"{row.area:.3f}")
    console.print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps([vars(row) for row in results], indent=2))
    return 0
