"""Command lines of ``launch/train.py`` (and the parsers the other entry points share)."""
import argparse
import os
import sys

from .argtypes import (fraction, learning_rate, map_class, non_negative_float, non_negative_int, normalization,
                       positive_float, positive_int, threshold_step, unit_interval)
from .config import COMPILE_BACKEND, DATASET_DEFAULTS, PRECISIONS, DataConfig, LossConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from .data.records import ImageReadError
from .losses import BACKGROUND_RULES, DATASET_LOSS_WEIGHTS

DATASETS = tuple(DATASET_DEFAULTS)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", choices=DATASETS, default="synthetic")
    group.add_argument("--data-root", help="dataset folder (synthetic: generated there if absent; "
                                           "default data/synthetic)")
    group.add_argument("--image-size", type=positive_int, default=224, help="network input (crop) size")
    group.add_argument("--resize", type=positive_int, help="resize before cropping (default image-size*256/224)")
    group.add_argument("--batch-size", type=positive_int, help="default: per dataset (CUB 32, ImageNet 128)")
    group.add_argument("--workers", type=non_negative_int, default=2,
                       help="data loader threads (DALI) or worker processes (torch)")
    group.add_argument("--loader", choices=("dali", "torch"), default="dali",
                       help="NVIDIA DALI (GPU decoding on CUDA runs, else CPU) or the torch DataLoader")
    group.add_argument("--skip-bad-images", action="store_true",
                       help="leave out (and count) missing, truncated or undecodable images instead of failing")
    group.add_argument("--train-crop", choices=("bas", "random-resized"), default="bas",
                       help="training augmentation: BAS resize + random crop + flip, or random resized crop")
    group.add_argument("--val-fraction", type=fraction, default=0.0,
                       help="fraction of each class's training images held out as the validation "
                            "split that evaluate.py --sweep chooses thresholds on")
    group.add_argument("--synthetic-classes", type=positive_int, default=10)
    group.add_argument("--synthetic-train-per-class", type=positive_int, default=60)
    group.add_argument("--synthetic-test-per-class", type=positive_int, default=20)
    group.add_argument("--synthetic-image-size", type=positive_int, default=224)


def data_config(args: argparse.Namespace) -> DataConfig:
    if args.data_root is None and args.dataset != "synthetic":
        raise SystemExit(f"error: --data-root is required for --dataset {args.dataset}")
    return DataConfig(
        dataset=args.dataset, data_root=args.data_root or "data/synthetic", image_size=args.image_size,
        resize=args.resize or round(args.image_size * 256 / 224),
        batch_size=args.batch_size or DATASET_DEFAULTS[args.dataset]["batch_size"], workers=args.workers,
        val_fraction=args.val_fraction, loader=args.loader, skip_bad_images=args.skip_bad_images,
        train_crop=args.train_crop,
        synthetic_classes=args.synthetic_classes, synthetic_train_per_class=args.synthetic_train_per_class,
        synthetic_test_per_class=args.synthetic_test_per_class, synthetic_image_size=args.synthetic_image_size)


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train MobileNetV1-BAS: early stage (BAS losses), late stage (plus the L1 pull "
                    "toward class-mean foreground maps), or the CAM baseline (--method cam).")
    parser.add_argument("--stage", choices=("early", "late"), default="early")
    parser.add_argument("--method", choices=("bas", "cam"), default="bas")
    parser.add_argument("--out", default="runs/default", help="run folder; each stage writes OUT/<cam|early|late>/")
    parser.add_argument("--init", help="late stage: early checkpoint to start from (default OUT/early/checkpoint.pt)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT/<stage>/checkpoint.pt (and the DeepSpeed checkpoint it names), "
                             "mid-epoch included")
    parser.add_argument("--checkpoint-every", type=non_negative_int, default=0, metavar="N",
                        help="also checkpoint every N optimizer steps (a fault loses at most N steps; 0: "
                             "at epoch ends only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto",
                        help="auto (DeepSpeed's accelerator: cuda:LOCAL_RANK, else cpu), cpu or cuda[:N]")
    parser.add_argument("--log-every", type=positive_int, default=20, help="steps between loss read-backs")
    parser.add_argument("--deterministic", action="store_true",
                        help="bit-identical runs on GPUs too: deterministic cuDNN, cuBLAS and PyTorch ops, no "
                             "float atomics (slower; CPU runs are reproducible without it)")
    add_data_arguments(parser)
    speed = parser.add_argument_group("speed")
    speed.add_argument("--precision", choices=PRECISIONS, default=RunConfig.precision,
                       help="bf16: autocast of forward + loss (convolutions in bf16; BatchNorm, master weights and "
                            "optimizer state fp32), the same as --deepspeed_config launch/configs/ds_bf16.json")
    speed.add_argument("--channels-last", action="store_true", help="model and batches in channels_last memory format")
    speed.add_argument("--compile", nargs="?", const=COMPILE_BACKEND, metavar="BACKEND",
                       help=f"torch.compile of forward + loss (backend: {COMPILE_BACKEND} unless named)")
    distributed = parser.add_argument_group("distributed (run under `deepspeed launch/train.py ...`)")
    distributed.add_argument("--grad-accum", type=positive_int, default=1,
                             help="micro-batches per optimizer step; --batch-size is the global batch "
                                  "= micro-batch x grad-accum x processes")
    distributed.add_argument("--sync-bn", action="store_true",
                             help="BatchNorm statistics over the global batch (all processes)")
    distributed.add_argument("--local_rank", type=int, default=-1, help=argparse.SUPPRESS)  # set by the launcher
    from .engine.distributed import deepspeed_module
    deepspeed_module().add_config_arguments(parser)  # --deepspeed_config (launch/configs/*.json)
    model = parser.add_argument_group("model")
    model.add_argument("--width", type=positive_float, default=1.0, help="width multiplier (1.0 = paper)")
    model.add_argument("--pretrained", help="MobileNetV1 ImageNet weights (pytorch-ssd base net or timm mobilenetv1_100)")
    optim = parser.add_argument_group("optimization")
    optim.add_argument("--epochs", type=positive_int, help="default: per dataset and stage")
    optim.add_argument("--lr", type=learning_rate, default=0.001)
    optim.add_argument("--milestones", type=non_negative_int, nargs="*", help="epochs where lr is multiplied by 0.1")
    optim.add_argument("--weight-decay", type=non_negative_float, default=5e-4)
    loss = parser.add_argument_group("loss")
    loss.add_argument("--alpha", type=non_negative_float, help="area weight (default per dataset, 1.5)")
    loss.add_argument("--beta", type=non_negative_float, help="foreground-guided CE weight (default per dataset, 0.5)")
    loss.add_argument("--bg-rule", choices=BACKGROUND_RULES, default="zero-ge",
                      help="r where S_bg >= S: zero-ge (CVPR CUB), zero-gt (CVPR ImageNet), one-ge (journal)")
    loss.add_argument("--lam", type=non_negative_float, default=1.0, help="late-stage mean-map L1 weight")
    return parser


def train_config(args: argparse.Namespace) -> TrainConfig:
    defaults = DATASET_DEFAULTS[args.dataset]
    weights = DATASET_LOSS_WEIGHTS[args.dataset]
    epochs = args.epochs or defaults[f"{args.stage}_epochs"]
    return TrainConfig(
        data=data_config(args),
        model=ModelConfig(width_mult=args.width, pretrained=args.pretrained),
        loss=LossConfig(method=args.method, alpha=weights["alpha"] if args.alpha is None else args.alpha,
                        beta=weights["beta"] if args.beta is None else args.beta, bg_rule=args.bg_rule, lam=args.lam),
        optim=OptimConfig(lr=args.lr, weight_decay=args.weight_decay, epochs=epochs,
                          milestones=defaults["milestones"] if args.milestones is None else args.milestones,
                          grad_accum=args.grad_accum),
        run=RunConfig(stage=args.stage, out=args.out, seed=args.seed, device=args.device, init=args.init,
                      log_every=args.log_every, deepspeed_config=args.deepspeed_config, sync_bn=args.sync_bn,
                      checkpoint_every=args.checkpoint_every, deterministic=args.deterministic,
                      precision=args.precision, channels_last=args.channels_last, compile=args.compile),
    )


def train_main(argv: list[str] | None = None) -> int:
    args = train_parser().parse_args(argv)
    if args.method == "cam" and args.stage == "late":
        raise SystemExit("error: the CAM baseline has no late stage")
    from .engine import distributed
    from .engine.progress import print_error
    from .engine.run import run_training
    cfg = train_config(args)
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


# Fixed localization thresholds (BAS protocol) by (method, dataset): BAS MobileNet uses 0.15 on
# CUB (mean of all class maps) and 0.5 on ImageNet; CAM is conventionally cut at 0.2.
DEFAULT_THRESHOLDS = {("bas", "cub"): 0.15, ("bas", "imagenet"): 0.5, ("bas", "synthetic"): 0.5,
                      ("cam", "cub"): 0.2, ("cam", "imagenet"): 0.2, ("cam", "synthetic"): 0.2}


def evaluate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Evaluate a checkpoint: classification and localization "
                                                 "accuracy (BAS protocol and/or MaxBoxAcc).")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--method", choices=("bas", "cam"), help="localization map (default: as trained)")
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
    data = parser.add_argument_group("data (default: as in the checkpoint)")
    data.add_argument("--dataset", choices=DATASETS)
    data.add_argument("--data-root")
    data.add_argument("--image-size", type=positive_int)
    data.add_argument("--resize", type=positive_int)
    data.add_argument("--batch-size", type=positive_int)
    data.add_argument("--workers", type=non_negative_int)
    data.add_argument("--loader", choices=("dali", "torch"), help="NVIDIA DALI or the torch DataLoader")
    data.add_argument("--skip-bad-images", action="store_true", default=None,
                      help="leave out (and count) unreadable images instead of failing")
    return parser


def _data_config_for_evaluation(args: argparse.Namespace, cfg: TrainConfig) -> None:
    """Apply the data flags given on the command line over the checkpoint's data config."""
    for name in ("dataset", "data_root", "image_size", "resize", "batch_size", "workers", "loader",
                 "skip_bad_images"):
        if getattr(args, name) is not None:
            setattr(cfg.data, name, getattr(args, name))
    if args.image_size is not None and args.resize is None:
        cfg.data.resize = round(args.image_size * 256 / 224)


def evaluate_main(argv: list[str] | None = None) -> int:
    import json
    from pathlib import Path

    from .checkpoint import atomic_save
    from .engine import distributed
    from .engine.evaluate import SWEEP_NORMS, EvalSettings, evaluate, threshold_sweep
    from .engine.progress import console, print_error, results_table
    from .engine.run import load_data_split, model_from_checkpoint

    args = evaluate_parser().parse_args(argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under `deepspeed launch/evaluate.py`: each rank a shard
        distributed.init_process_group()
    try:
        model, state = model_from_checkpoint(args.checkpoint)
        cfg = TrainConfig.from_dict(state["config"])
        _data_config_for_evaluation(args, cfg)
        saved = state.get("eval_settings", {})
        method = args.method or cfg.loss.method
        norm = args.norm or saved.get("norm", "minmax")
        threshold = args.threshold if args.threshold is not None else saved.get(
            "threshold", DEFAULT_THRESHOLDS[(method, cfg.data.dataset)])
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
