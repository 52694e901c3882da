"""Run configuration: one dataclass per concern, printable, saved with every checkpoint."""
from dataclasses import asdict, dataclass, field, fields

PRECISIONS = ("fp32", "bf16")  # bf16: autocast of forward + loss; BatchNorm and master weights fp32
COMPILE_BACKEND = "inductor"  # torch.compile's backend when --compile names none


@dataclass
class DataConfig:
    """Where the images come from and how they are shaped."""

    dataset: str = "synthetic"
    data_root: str = "data/synthetic"
    image_size: int = 224  # crop fed to the network
    resize: int = 256  # resize before the crop (BAS: 256 for 224)
    batch_size: int = 32
    workers: int = 2
    val_fraction: float = 0.0  # training images held out (per class) to choose thresholds on
    loader: str = "dali"  # "dali" (NVIDIA DALI; GPU decoding on CUDA runs) or "torch" (DataLoader)
    skip_bad_images: bool = False  # leave out (and count) missing/corrupt images instead of failing
    train_crop: str = "bas"  # "bas" (resize, random crop, flip) or "random-resized" (ROI-decoded)
    # Synthetic set (generated into data_root when absent).
    synthetic_classes: int = 10
    synthetic_train_per_class: int = 60
    synthetic_test_per_class: int = 20
    synthetic_image_size: int = 128
    synthetic_seed: int = 0

    def __post_init__(self) -> None:
        choices = {"loader": ("dali", "torch"), "train_crop": ("bas", "random-resized")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"data.{name} must be one of {allowed}, got {getattr(self, name)!r}")


@dataclass
class ModelConfig:
    """MobileNetV1-BAS shape; ``num_classes`` is filled from the dataset."""

    num_classes: int = 0
    width_mult: float = 1.0
    pretrained: str | None = None


@dataclass
class LossConfig:
    """``method``: ``bas`` (BAS losses, plus the mean-map term in the late stage) or ``cam``
    (classification loss only, the CAM baseline)."""

    method: str = "bas"
    alpha: float = 1.5  # area weight
    beta: float = 0.5  # foreground-guided CE weight
    bg_rule: str = "zero-ge"
    lam: float = 1.0  # late-stage L1 weight


@dataclass
class OptimConfig:
    """SGD + Nesterov with the BAS learning-rate multipliers and step decay (METHOD.md §8)."""

    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 5e-4
    epochs: int = 100
    milestones: list[int] = field(default_factory=lambda: [80])
    gamma: float = 0.1
    grad_accum: int = 1  # micro-batches per optimizer step (batch_size = micro x grad_accum x ranks)


@dataclass
class RunConfig:
    """Stage, output folder, seed, logging and the DeepSpeed run."""

    stage: str = "early"
    out: str = "runs/default"
    seed: int = 0
    device: str = "auto"  # "auto": the DeepSpeed accelerator's (cuda:LOCAL_RANK or cpu)
    init: str | None = None  # early-stage checkpoint the late stage starts from
    log_every: int = 20  # steps between progress read-backs of the losses
    deepspeed_config: str | None = None  # DeepSpeed JSON (launch/configs/); None: fp32, no ZeRO
    sync_bn: bool = False  # BatchNorm statistics over the global batch (all ranks)
    checkpoint_every: int = 0  # optimizer steps between mid-epoch checkpoints (0: epoch ends only)
    deterministic: bool = False  # deterministic algorithms on GPUs too (engine/determinism.py)
    precision: str = "fp32"  # one of PRECISIONS (a DeepSpeed config's torch_autocast section sets bf16 too)
    channels_last: bool = False  # model and batches in channels_last memory format
    compile: str | None = None  # torch.compile backend of forward + loss (None: eager)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"run.precision must be one of {PRECISIONS}, got {self.precision!r}")


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


# Paper schedules (METHOD.md §4, §8): epochs per stage, batch size, decay epochs.
DATASET_DEFAULTS = {
    "cub": {"batch_size": 32, "early_epochs": 100, "late_epochs": 100, "milestones": [80]},
    "imagenet": {"batch_size": 128, "early_epochs": 8, "late_epochs": 4, "milestones": [3, 6]},
    "synthetic": {"batch_size": 32, "early_epochs": 30, "late_epochs": 15, "milestones": [25]},
}
