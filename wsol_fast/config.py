"""Run configuration: one dataclass per concern, printable, saved with every checkpoint as
``config.json``. Each field carries its default, help, choices and value check (``fields.option``),
so commands generate their flags from here and every default is written once. The per-dataset
values of the paper are one table, ``PRESETS`` (``preset_of``: a wsolevaluation run takes the
preset of the dataset its metadata describes).
"""
from dataclasses import asdict, dataclass, field, fields
from pathlib import PurePath

from .fields import (FLOAT32_MAX, checked, fraction, non_negative_float, non_negative_int, option, positive_float,
                     positive_int, validate)

PRECISIONS = ("fp32", "bf16")  # bf16: autocast of forward + loss; BatchNorm and master weights fp32
COMPILE_BACKEND = "inductor"  # torch.compile's backend when --compile names none
STAGES = ("early", "late")
METHODS = ("bas", "cam")
LOADERS = ("dali", "torch")
TRAIN_CROPS = ("bas", "random-resized")
# How the background ratio r = S_bg / S is treated where the background scores at least as high
# as the image: the CVPR code's CUB rule (>= -> 0), its ImageNet rule (> -> 0), the journal's (>= -> 1).
BACKGROUND_RULES = ("zero-ge", "zero-gt", "one-ge")
# Learning-rate multipliers of the BAS optimizer (METHOD.md §8) by (part, parameter kind).
LR_MULTIPLIERS = {("backbone", "weight"): 1.0, ("backbone", "bias"): 2.0,
                  ("head", "weight"): 10.0, ("head", "bias"): 20.0}


def scaled_resize(image_size: int) -> int:
    """The resize side that keeps BAS's 256/224 ratio for crop size ``image_size`` (224 -> 256)."""
    return round(image_size * 256 / 224)


@dataclass(frozen=True)
class DatasetPreset:
    """The paper's values for one dataset (METHOD.md §4, §8, MobileNetV1), taken by a run unless a
    flag or ``--config`` sets them."""

    batch_size: int
    epochs: dict  # stage -> epochs
    milestones: tuple[int, ...]  # epochs where the learning rate is multiplied by gamma
    alpha: float  # area-loss weight
    beta: float  # foreground-guided CE weight
    thresholds: dict  # method -> fixed localization threshold of the BAS protocol (CAM: 0.2 by convention)


PRESETS = {
    "synthetic": DatasetPreset(32, {"early": 30, "late": 15}, (25,), 1.5, 0.5, {"bas": 0.5, "cam": 0.2}),
    "cub": DatasetPreset(32, {"early": 100, "late": 100}, (80,), 1.5, 0.5, {"bas": 0.15, "cam": 0.2}),
    "imagenet": DatasetPreset(128, {"early": 8, "late": 4}, (3, 6), 1.5, 0.5, {"bas": 0.5, "cam": 0.2}),
    # [choice] the paper trains no OpenImages model: wsolevaluation's OpenImages schedule (batch 32,
    # 10 epochs, lr decay every 3), half of it for the late stage, MobileNetV1's loss weights
    "openimages": DatasetPreset(32, {"early": 10, "late": 5}, (3, 6, 9), 1.5, 0.5, {"bas": 0.5, "cam": 0.2}),
}
# The wsolevaluation benchmark's metadata (clovaai/wsolevaluation: metadata/<name>/<split>/) by
# dataset name -> the preset its runs take; OpenImages has masks instead of boxes.
WSOLEVALUATION_PRESETS = {"CUB": "cub", "ILSVRC": "imagenet", "OpenImages": "openimages"}
MASK_DATASETS = ("OpenImages",)
DATASETS = ("synthetic", "cub", "imagenet", "wsolevaluation")
DEFAULT = PRESETS[DATASETS[0]]  # the dataclass defaults are the default dataset's preset
PER_DATASET = "per dataset"


def wsolevaluation_dataset(data: "DataConfig") -> str:
    """The wsolevaluation dataset (a key of ``WSOLEVALUATION_PRESETS``) that ``data`` reads:
    ``metadata_dataset``, else the name of ``metadata_root``'s folder (any letter case);
    ValueError without ``metadata_root`` or when neither tells."""
    if data.metadata_root is None:
        raise ValueError("--dataset wsolevaluation needs --metadata-root (the benchmark's metadata folder of one "
                         "dataset, e.g. metadata/CUB)")
    if data.metadata_dataset is not None:
        return data.metadata_dataset
    folder = PurePath(data.metadata_root).name
    by_name = {name.lower(): name for name in WSOLEVALUATION_PRESETS}
    if folder.lower() not in by_name:
        raise ValueError(f"cannot tell which dataset --metadata-root {data.metadata_root} describes: its folder name "
                         f"{folder!r} is none of {', '.join(WSOLEVALUATION_PRESETS)}; pass --metadata-dataset")
    return by_name[folder.lower()]


def preset_of(data: "DataConfig") -> DatasetPreset:
    """The preset of the dataset ``data`` reads (wsolevaluation: of the dataset its metadata describes)."""
    if data.dataset == "wsolevaluation":
        return PRESETS[WSOLEVALUATION_PRESETS[wsolevaluation_dataset(data)]]
    return PRESETS[data.dataset]


learning_rate = checked(float, lambda v: 0 < v and v * max(LR_MULTIPLIERS.values()) <= FLOAT32_MAX,
                        f"a number > 0 whose x{max(LR_MULTIPLIERS.values()):g} (the heads' biases) fits float32")


@dataclass
class DataConfig:
    """Where the images come from and how they are shaped."""

    dataset: str = option(DATASETS[0], "dataset: synthetic, CUB-200-2011 or ImageNet in their own layouts, or "
                                       "wsolevaluation metadata (--metadata-root) over the images of --data-root",
                          choices=DATASETS)
    data_root: str = option("data/synthetic", "dataset folder (synthetic: generated there if absent; "
                                              "wsolevaluation: the folder image_ids.txt's paths are relative to; "
                                              "required for all but synthetic)")
    metadata_root: str | None = option(None, "wsolevaluation: metadata folder of one dataset, holding train/ val/ "
                                             "test/ (e.g. metadata/CUB); train reads train, evaluate --sweep val, "
                                             "evaluate test")
    metadata_dataset: str | None = option(None, "wsolevaluation: the dataset --metadata-root describes; it sets the "
                                                "preset (CUB: cub's, ILSVRC: imagenet's, OpenImages: openimages') "
                                                "and OpenImages reads masks instead of boxes",
                                          choices=tuple(WSOLEVALUATION_PRESETS), shown="--metadata-root's folder name")
    mask_root: str | None = option(None, "wsolevaluation OpenImages: folder the mask paths of localization.txt are "
                                         "relative to", shown="--data-root")
    image_size: int = option(224, "network input (crop) size", check=positive_int)
    resize: int = option(scaled_resize(224), "resize before cropping", check=positive_int,
                         shown="image-size x 256/224")
    batch_size: int = option(DEFAULT.batch_size, "global batch = micro-batch x grad-accum x processes",
                             check=positive_int, shown=PER_DATASET)
    workers: int = option(2, "data loader threads (DALI) or worker processes (torch)", check=non_negative_int)
    val_fraction: float = option(0.0, "fraction of each class's training images held out as the validation split "
                                      "that evaluate --sweep chooses thresholds on", check=fraction)
    loader: str = option("dali", "NVIDIA DALI (GPU decoding on CUDA runs, else CPU) or the torch DataLoader",
                         choices=LOADERS)
    skip_bad_images: bool = option(False, "leave out (and count) missing, truncated or undecodable images "
                                          "instead of failing")
    train_crop: str = option("bas", "training augmentation: BAS resize + random crop + flip, or random "
                                    "resized crop (ROI-decoded)", choices=TRAIN_CROPS)
    synthetic_classes: int = option(10, "synthetic set: classes", check=positive_int)
    synthetic_train_per_class: int = option(60, "synthetic set: training images per class", check=positive_int)
    synthetic_test_per_class: int = option(20, "synthetic set: test images per class", check=positive_int)
    synthetic_image_size: int = option(224, "synthetic set: image side in pixels", check=positive_int)
    synthetic_seed: int = option(0, "synthetic set: generator seed", flag=None)

    def __post_init__(self) -> None:
        validate(self, "data")


@dataclass
class ModelConfig:
    """MobileNetV1-BAS shape; ``num_classes`` is filled from the dataset."""

    num_classes: int = option(0, "classes of the dataset", flag=None)
    width_mult: float = option(1.0, "width multiplier (1.0 = paper)", flag="--width", check=positive_float)
    pretrained: str | None = option(None, "MobileNetV1 ImageNet weights (pytorch-ssd base net or timm "
                                          "mobilenetv1_100)")

    def __post_init__(self) -> None:
        validate(self, "model")


@dataclass
class LossConfig:
    """``method``: ``bas`` (BAS losses, plus the mean-map term in the late stage) or ``cam``
    (classification loss only, the CAM baseline)."""

    method: str = option("bas", "bas, or the CAM baseline (classification loss only)", choices=METHODS)
    alpha: float = option(DEFAULT.alpha, "area weight", check=non_negative_float, shown=PER_DATASET)
    beta: float = option(DEFAULT.beta, "foreground-guided CE weight", check=non_negative_float, shown=PER_DATASET)
    bg_rule: str = option("zero-ge", "r where S_bg >= S: zero-ge (CVPR CUB), zero-gt (CVPR ImageNet), "
                                     "one-ge (journal)", choices=BACKGROUND_RULES)
    lam: float = option(1.0, "late-stage mean-map L1 weight", check=non_negative_float)

    def __post_init__(self) -> None:
        validate(self, "loss")


@dataclass
class OptimConfig:
    """SGD + Nesterov with the BAS learning-rate multipliers and step decay (METHOD.md §8)."""

    lr: float = option(0.001, "base learning rate", check=learning_rate)
    momentum: float = option(0.9, "SGD momentum (Nesterov)", flag=None)
    weight_decay: float = option(5e-4, "weight decay", check=non_negative_float)
    epochs: int = option(DEFAULT.epochs["early"], "epochs", check=positive_int, shown="per dataset and stage")
    milestones: list[int] = option(list(DEFAULT.milestones), "epochs where lr is multiplied by gamma",
                                   check=non_negative_int, shown=PER_DATASET)
    gamma: float = option(0.1, "learning-rate decay factor at each milestone", flag=None)
    grad_accum: int = option(1, "micro-batches per optimizer step; --batch-size is the global batch "
                                "= micro-batch x grad-accum x processes", check=positive_int)

    def __post_init__(self) -> None:
        validate(self, "optim")


@dataclass
class RunConfig:
    """Stage, output folder, seed, logging and the DeepSpeed run."""

    stage: str = option("early", "early: BAS losses; late: plus the L1 pull toward class-mean foreground maps",
                        choices=STAGES)
    out: str = option("runs/default", "run folder; each stage writes OUT/<cam|early|late>/")
    seed: int = option(0, "seed of initialization, augmentation and order")
    device: str = option("auto", "auto (DeepSpeed's accelerator: cuda:LOCAL_RANK, else cpu), cpu or cuda[:N]")
    init: str | None = option(None, "late stage: early checkpoint to start from", shown="OUT/early/checkpoint.pt")
    log_every: int = option(20, "steps between loss read-backs", check=positive_int)
    deepspeed_config: str | None = option(None, "DeepSpeed JSON (launch/configs/); none: fp32, no ZeRO", flag=None)
    sync_bn: bool = option(False, "BatchNorm statistics over the global batch (all processes)")
    checkpoint_every: int = option(0, "also checkpoint every N optimizer steps (a fault loses at most N steps; "
                                      "0: at epoch ends only)", check=non_negative_int,
                                  metavar="N")
    deterministic: bool = option(False, "bit-identical runs on GPUs too: deterministic cuDNN, cuBLAS and PyTorch "
                                         "ops, no float atomics (slower; CPU runs are reproducible without it)")
    precision: str = option("fp32", "bf16: autocast of forward + loss (convolutions in bf16; BatchNorm, master "
                                    "weights and optimizer state fp32), as launch/configs/ds_bf16.json",
                            choices=PRECISIONS)
    channels_last: bool = option(False, "model and batches in channels_last memory format")
    compile: str | None = option(None, f"torch.compile of forward + loss with BACKEND ({COMPILE_BACKEND} unless "
                                       "named)", const=COMPILE_BACKEND, shown="eager",
                                metavar="BACKEND")

    def __post_init__(self) -> None:
        validate(self, "run")


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Inverse of ``to_dict``; unknown keys are an error (a checkpoint from another version)."""
        parts = {}
        for part in fields(cls):
            section = dict(values.get(part.name, {}))
            known = {f.name for f in fields(part.default_factory)}
            unknown = set(section) - known
            if unknown:
                raise ValueError(f"config section {part.name!r} has unknown keys {sorted(unknown)}")
            parts[part.name] = part.default_factory(**section)
        return cls(**parts)

    @property
    def run_name(self) -> str:
        """The run's sub-folder of ``run.out`` and the kind of its step: ``cam``, ``early`` or ``late``."""
        return "cam" if self.loss.method == "cam" else self.run.stage

    def validate(self) -> None:
        """Check every section (after fields were set one by one, e.g. from flags)."""
        for part in fields(self):
            validate(getattr(self, part.name), part.name)

    def apply_preset(self, preset: DatasetPreset) -> None:
        """Take ``preset``'s batch size, schedule (of this config's stage) and loss weights."""
        self.data.batch_size = preset.batch_size
        self.optim.epochs = preset.epochs[self.run.stage]
        self.optim.milestones = list(preset.milestones)
        self.loss.alpha, self.loss.beta = preset.alpha, preset.beta
