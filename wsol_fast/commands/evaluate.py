"""``wsol-fast evaluate`` (``launch/evaluate.py``, under ``deepspeed`` too: each rank a shard):
classification and localization accuracy of a checkpoint (BAS protocol and/or MaxBoxAcc), with
the threshold sweep on the validation split and the evaluation grid."""
import argparse
import json
import os
from pathlib import Path

from .. import collectives
from ..argtypes import map_class
from ..checkpoint import atomic_save
from ..config import METHODS, DataConfig, TrainConfig
from ..data import load_data_split
from ..engine import distributed
from ..engine.evaluate import (PROTOCOLS, SWEEP_NORMS, EvalSettings, evaluate, normalization_sweep_on_masks,
                               threshold_sweep)
from ..engine.progress import console, results_table
from ..fields import add_arguments, positive_int
from ..inference import localization_settings
from ..models.restore import model_from_checkpoint
from ..visualize import save_eval_grid
from .common import (add_device_argument, add_localization_arguments, add_sweep_arguments, chosen_device,
                     config_from_arguments, run_command)

EVALUATION_DATA_FLAGS = ("dataset", "data_root", "metadata_root", "metadata_dataset", "mask_root", "image_size",
                         "resize", "batch_size", "workers", "loader", "skip_bad_images")
RESULT_COLUMNS = ("top1_cls", "top5_cls", "gt_known", "top1_loc", "top5_loc", "maxboxacc", "maxboxaccv2", "pxap")


def evaluate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Evaluate a checkpoint: classification and localization "
                                                 "accuracy (BAS protocol and/or MaxBoxAcc).")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--method", choices=METHODS, help="localization map (default: as trained)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default=EvalSettings.protocol)
    add_localization_arguments(parser)
    parser.add_argument("--cam", type=map_class, default=EvalSettings.map_class,
                        help="class whose map localizes: gt | top1 | topk:K | all")
    parser.add_argument("--ten-crop", action="store_true", help="ten-crop classification (BAS protocol)")
    add_sweep_arguments(parser)
    parser.add_argument("--sweep", action="store_true",
                        help="choose the threshold (and, without --norm, the normalization) by GT-known "
                             "on the validation split (--val-fraction's, or wsolevaluation's val/; OpenImages: "
                             "the normalization by PxAP, the threshold kept), save the choice with the "
                             "checkpoint, then evaluate")
    parser.add_argument("--split", choices=("test", "val"), default="test",
                        help="split to report (wsolevaluation: its metadata folder's test/ or val/)")
    parser.add_argument("--out", help="JSON file for the results")
    add_device_argument(parser, "the model")
    parser.add_argument("--local_rank", type=int, default=-1, help=argparse.SUPPRESS)  # set by deepspeed
    parser.add_argument("--save-vis", type=positive_int, metavar="N",
                        help="also write a grid PNG of N images of the split: maps and boxes of the "
                             "checkpoint (and of --vis-checkpoints) side by side")
    parser.add_argument("--vis-checkpoints", nargs="+", default=[], metavar="CKPT",
                        help="more checkpoints for the --save-vis grid (e.g. CAM, early, late)")
    parser.add_argument("--vis-out", help="grid PNG (default: OUT with _grid.png, else next to the checkpoint)")
    add_arguments(parser, DataConfig, "data", "data (default: as in the checkpoint)", only=EVALUATION_DATA_FLAGS)
    return parser


def evaluate_main(argv: list[str] | None = None) -> int:
    """``wsol-fast evaluate``; returns the exit status."""
    args = evaluate_parser().parse_args(argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under `deepspeed launch/evaluate.py`: each rank a shard
        distributed.init_process_group()
    return run_command(_evaluate, args)


def _evaluate(args: argparse.Namespace) -> int:
    model, state = model_from_checkpoint(args.checkpoint)
    cfg = config_from_arguments(args, TrainConfig.from_dict(state["config"]))
    settings = localization_settings(state, cfg, args.method, args.norm, args.threshold, args.cam,
                                     protocol=args.protocol, ten_crop=args.ten_crop, sweep_step=args.step,
                                     box_rule=args.box_rule)
    device = chosen_device(args.device)
    data = dict(image_size=cfg.data.image_size, resize=cfg.data.resize, batch_size=cfg.data.batch_size,
                device=device, workers=cfg.data.workers, loader=cfg.data.loader,
                skip_bad_images=cfg.data.skip_bad_images)
    sweep = None
    if args.sweep:
        norms = [args.norm] if args.norm else list(SWEEP_NORMS)
        val = load_data_split(cfg, "val")
        if val.masks is not None:
            sweep = normalization_sweep_on_masks(model, val, settings, norms, **data)
            settings.norm = max(sweep, key=lambda row: row["pxap"])["norm"]
            console.print(results_table("PxAP on the validation split per normalization (threshold kept: "
                                        f"{settings.threshold})", sweep, ["norm", "pxap"]))
        else:
            sweep = threshold_sweep(model, val, settings, norms, **data)
            best = max(sweep, key=lambda row: row["gt_known"])
            settings.norm, settings.threshold = best["norm"], best["best_threshold"]
            console.print(results_table("GT-known on the validation split (best threshold per normalization)",
                                        sweep, ["norm", "best_threshold", "gt_known"]))
        state["eval_settings"] = {"norm": settings.norm, "threshold": settings.threshold,
                                  "method": settings.method, "map_class": args.cam}
        if collectives.is_main():
            atomic_save(state, args.checkpoint)
        console.print(f"saved norm={settings.norm} threshold={settings.threshold} with {args.checkpoint}")
    split = load_data_split(cfg, args.split)
    if split.num_classes != model.num_classes:
        raise ValueError(f"checkpoint {args.checkpoint} has {model.num_classes} classes, "
                         f"the {cfg.data.dataset} {args.split} split has {split.num_classes}")
    result = evaluate(model, split, settings, **data)
    if args.save_vis and collectives.is_main():
        default_vis = (Path(args.out).with_name(Path(args.out).stem + "_grid.png") if args.out
                       else Path(args.checkpoint).parent / f"eval_grid_{args.split}.png")
        result["vis"] = str(save_eval_grid([args.checkpoint, *args.vis_checkpoints], args.split, args.save_vis,
                                           args.vis_out or default_vis, norm=args.norm, threshold=args.threshold,
                                           map_class=args.cam, data=cfg.data, device=device))
        console.print(f"saved {result['vis']}")
    if not collectives.is_main():  # every rank holds the all-reduced result; rank 0 reports it
        return 0
    result = {"checkpoint": str(args.checkpoint), "split": args.split, **result}
    if sweep is not None:
        result["sweep"] = sweep
    columns = [c for c in RESULT_COLUMNS if c in result]
    console.print(results_table(f"{args.checkpoint}: {settings.method}, {settings.norm}, threshold "
                                f"{settings.threshold}, {args.split} split", [result], columns))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0
