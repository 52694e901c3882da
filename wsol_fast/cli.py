"""Command lines of ``launch/train.py`` (and the parsers the other entry points share). The
training flags are generated from the config dataclasses (``config.py``, ``fields.py``)."""
import argparse
import json
import os
import sys
from pathlib import Path

from .argtypes import map_class, normalization, threshold_step
from .fields import positive_int, unit_interval
from .config import METHODS, PRESETS, DataConfig, LossConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig, scaled_resize
from .data.records import ImageReadError
from .fields import add_arguments, apply_arguments

TRAIN_SECTIONS = (("run", RunConfig, "run"), ("data", DataConfig, "data"), ("model", ModelConfig, "model"),
                  ("optim", OptimConfig, "optimization"), ("loss", LossConfig, "loss"))


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train MobileNetV1-BAS: early stage (BAS losses), late stage (plus the L1 pull "
                    "toward class-mean foreground maps), or the CAM baseline (--method cam). Values come "
                    "from the flags, then --config's file, then the dataset's preset, then the defaults.")
    parser.add_argument("--config", type=Path, metavar="JSON",
                        help="start from a saved run's config.json (OUT/<stage>/config.json); flags override it")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT/<stage>/checkpoint.pt (and the DeepSpeed checkpoint it names), "
                             "mid-epoch included")
    parser.add_argument("--local_rank", type=int, default=-1, help=argparse.SUPPRESS)  # set by the launcher
    for name, section, title in TRAIN_SECTIONS:
        add_arguments(parser, section, name, title)
    from .engine.distributed import deepspeed_module
    deepspeed_module().add_config_arguments(parser)  # --deepspeed_config (launch/configs/*.json)
    return parser


def read_config(path: Path) -> TrainConfig:
    """The TrainConfig saved at ``path`` (a run's config.json); errors name the file."""
    try:
        return TrainConfig.from_dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError) as error:  # JSONDecodeError is a ValueError
        raise ValueError(f"--config {path}: {error}") from error


def config_from_arguments(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """The flags given (sections' flags from ``add_arguments``) over ``base`` (a saved config),
    or else over the dataset's preset and the defaults; ``--resize`` follows a new
    ``--image-size`` unless given."""
    cfg = base or TrainConfig()
    given = apply_arguments(args, cfg)
    if base is None:
        cfg.apply_preset(PRESETS[cfg.data.dataset])
        apply_arguments(args, cfg)
        if cfg.data.dataset != "synthetic" and "data.data_root" not in given:
            raise SystemExit(f"error: --data-root is required for --dataset {cfg.data.dataset}")
    if "data.image_size" in given and "data.resize" not in given:
        cfg.data.resize = scaled_resize(cfg.data.image_size)
    cfg.validate()
    return cfg


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The run's config from ``train_parser``'s arguments (``--config``, the flags, DeepSpeed's)."""
    cfg = config_from_arguments(args, read_config(args.config) if args.config else None)
    if args.deepspeed_config is not None:
        cfg.run.deepspeed_config = args.deepspeed_config
    return cfg


def train_main(argv: list[str] | None = None) -> int:
    args = train_parser().parse_args(argv)
    from .engine import distributed
    from .engine.progress import print_error
    from .engine.run import run_training
    try:
        cfg = train_config(args)
    except ValueError as error:
        print_error(error)
        return 1
    if cfg.loss.method == "cam" and cfg.run.stage == "late":
        raise SystemExit("error: the CAM baseline has no late stage")
    try:
        run_training(cfg, resume=args.resume)
    except (OSError, ValueError, FloatingPointError, ImageReadError) as error:  # OSError: missing file, full disk
        print_error(error)
        return 1
    if args.local_rank >= 0 or distributed.world_size() > 1:  # a launched process: leave the group
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(train_main())


EVALUATION_DATA_FLAGS = ("dataset", "data_root", "image_size", "resize", "batch_size", "workers", "loader",
                         "skip_bad_images")


def evaluate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Evaluate a checkpoint: classification and localization "
                                                 "accuracy (BAS protocol and/or MaxBoxAcc).")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--method", choices=METHODS, help="localization map (default: as trained)")
    parser.add_argument("--protocol", choices=("bas", "maxboxacc", "both"), default="bas")
    parser.add_argument("--norm", type=normalization,
                        help="minmax | max | percentile:P | pas[:P] | ivr:P (default: saved with the checkpoint "
                             "by --sweep, else minmax)")
    parser.add_argument("--threshold", type=unit_interval,
                        help="fixed threshold of the BAS protocol (default: saved by --sweep, else per method "
                             "and dataset)")
    parser.add_argument("--cam", type=map_class, default="gt",
                        help="class whose map localizes: gt | top1 | topk:K | all")
    parser.add_argument("--ten-crop", action="store_true", help="ten-crop classification (BAS protocol)")
    parser.add_argument("--step", type=threshold_step, default=0.01, help="MaxBoxAcc threshold spacing (0.01 or 0.001)")
    parser.add_argument("--sweep", action="store_true",
                        help="choose the threshold (and, without --norm, the normalization) by GT-known "
                             "on the validation split, save the choice with the checkpoint, then evaluate")
    parser.add_argument("--split", choices=("test", "val"), default="test")
    parser.add_argument("--out", help="JSON file for the results")
    parser.add_argument("--device", default="cpu")
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
    from .checkpoint import atomic_save
    from .engine import distributed
    from .engine.evaluate import SWEEP_NORMS, EvalSettings, evaluate, threshold_sweep
    from .engine.progress import console, print_error, results_table
    from .data import load_data_split
    from .models.restore import model_from_checkpoint

    args = evaluate_parser().parse_args(argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under `deepspeed launch/evaluate.py`: each rank a shard
        distributed.init_process_group()
    try:
        model, state = model_from_checkpoint(args.checkpoint)
        cfg = config_from_arguments(args, TrainConfig.from_dict(state["config"]))
        saved = state.get("eval_settings", {})
        method = args.method or cfg.loss.method
        norm = args.norm or saved.get("norm", "minmax")
        threshold = args.threshold if args.threshold is not None else saved.get(
            "threshold", PRESETS[cfg.data.dataset].thresholds[method])
        settings = EvalSettings(method, norm, threshold, args.cam, args.protocol, args.ten_crop, args.step)
        # under the launcher each process uses its own GPU (``--device cuda`` would put all on cuda:0)
        device = args.device if args.device == "cpu" or distributed.world_size() == 1 else str(distributed.device())
        data = dict(image_size=cfg.data.image_size, resize=cfg.data.resize, batch_size=cfg.data.batch_size,
                    device=device, workers=cfg.data.workers, loader=cfg.data.loader,
                    skip_bad_images=cfg.data.skip_bad_images)
        sweep = None
        if args.sweep:
            norms = [args.norm] if args.norm else list(SWEEP_NORMS)
            sweep = threshold_sweep(model, load_data_split(cfg, "val"), settings, norms, **data)
            best = max(sweep, key=lambda row: row["gt_known"])
            settings.norm, settings.threshold = best["norm"], best["best_threshold"]
            console.print(results_table("GT-known on the validation split (best threshold per normalization)",
                                        sweep, ["norm", "best_threshold", "gt_known"]))
            state["eval_settings"] = {"norm": settings.norm, "threshold": settings.threshold,
                                      "method": method, "map_class": args.cam}
            if distributed.is_main():
                atomic_save(state, args.checkpoint)
            console.print(f"saved norm={settings.norm} threshold={settings.threshold} with {args.checkpoint}")
        split = load_data_split(cfg, args.split)
        if split.num_classes != model.num_classes:
            raise ValueError(f"checkpoint {args.checkpoint} has {model.num_classes} classes, "
                             f"the {cfg.data.dataset} {args.split} split has {split.num_classes}")
        result = evaluate(model, split, settings, **data)
        if args.save_vis and distributed.is_main():
            from .visualize import save_eval_grid
            default_vis = (Path(args.out).with_name(Path(args.out).stem + "_grid.png") if args.out
                           else Path(args.checkpoint).parent / f"eval_grid_{args.split}.png")
            vis = save_eval_grid([args.checkpoint, *args.vis_checkpoints], args.split, args.save_vis,
                                 args.vis_out or default_vis, norm=args.norm, threshold=args.threshold,
                                 map_class=args.cam, data=cfg.data, device=device)
            console.print(f"saved {vis}")
    except (FileNotFoundError, ValueError, ImageReadError) as error:
        print_error(error)
        return 1
    if not distributed.is_main():  # every rank holds the all-reduced result; rank 0 reports it
        return 0
    result = {"checkpoint": str(args.checkpoint), "split": args.split, **result}
    if args.save_vis:
        result["vis"] = str(vis)
    if sweep is not None:
        result["sweep"] = sweep
    columns = [c for c in ("top1_cls", "top5_cls", "gt_known", "top1_loc", "top5_loc", "maxboxacc", "maxboxaccv2")
               if c in result]
    console.print(results_table(f"{args.checkpoint}: {method}, {settings.norm}, threshold {settings.threshold}, "
                                f"{args.split} split", [result], columns))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """The ``wsol-fast`` console script: ``wsol-fast {train,evaluate,localize} ...`` (each has ``--help``)."""
    from .localize import localize_main  # localize imports this module: load it on use

    commands = {"train": train_main, "evaluate": evaluate_main, "localize": localize_main}
    usage = f"usage: wsol-fast {{{','.join(commands)}}} ...   (wsol-fast COMMAND --help for its options)"
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(usage)
        return 0
    if not argv or argv[0] not in commands:
        print(usage + (f"\nerror: unknown command {argv[0]!r}" if argv else ""), file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])
