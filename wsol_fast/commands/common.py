"""What every command shares: the wrapper that turns bad input into one ``error:`` line and an
exit status (``run_command``), and the run configuration built from generated flags
(``config_from_arguments``) or read from a saved ``config.json`` (``read_config``)."""
import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch

from .. import collectives
from ..argtypes import device, normalization, threshold_step
from ..config import RunConfig, TrainConfig, preset_of, scaled_resize, wsolevaluation_dataset
from ..engine import distributed
from ..engine.evaluate import EvalSettings
from ..engine.progress import print_error
from ..errors import UsageError, WsolFastError
from ..fields import apply_arguments, unit_interval
from ..metrics import BOX_RULES

# Bad input as a command meets it: ours (they name file, flag or value), a missing or unwritable
# file, a value out of range, a non-finite number. Anything else is a bug and keeps its traceback.
COMMAND_ERRORS = (WsolFastError, OSError, ValueError, FloatingPointError)


def run_command(body: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``body(args)``'s exit status; bad input is printed as ``error: <message>`` and gives 1
    (2 for flags that cannot go together, as argparse's own usage errors)."""
    try:
        return body(args)
    except COMMAND_ERRORS as error:
        print_error(error)
        return 2 if isinstance(error, UsageError) else 1


def add_device_argument(parser: argparse.ArgumentParser, what: str, default: str = RunConfig.device) -> None:
    """``--device``: where ``what`` runs (``chosen_device`` resolves ``auto``)."""
    parser.add_argument("--device", type=device, default=default,
                        help=f"where {what} runs: auto (this process's GPU under a launcher, else cuda when there "
                             f"is a GPU, else cpu), cpu or cuda[:N] (default {default})")


def chosen_device(requested: str) -> str:
    """The device of ``--device requested``: under a launcher each process takes its own GPU
    (``cuda`` alone would put every rank on cuda:0), unless ``cpu``; ``auto`` alone is cuda when
    there is a GPU, else cpu."""
    if requested != "cpu" and collectives.world_size() > 1:
        return str(distributed.device())
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """``--step`` and ``--box-rule``: the thresholds of the MaxBoxAcc sweep and how it boxes a
    thresholded map."""
    parser.add_argument("--step", type=threshold_step, default=EvalSettings.sweep_step,
                        help="MaxBoxAcc map-threshold spacing (0.01 or 0.001)")
    parser.add_argument("--box-rule", choices=BOX_RULES, default=EvalSettings.box_rule,
                        help="MaxBoxAcc boxes: component (the largest 8-connected component of the float map "
                             "by pixels, the BAS protocol's rule) or contour (wsolevaluation's rule exactly: "
                             "uint8 map, cv2.findContours, the largest contour by area; for numbers comparable "
                             "with published MaxBoxAcc / MaxBoxAccV2)")


def add_localization_arguments(parser: argparse.ArgumentParser) -> None:
    """``--norm`` and ``--threshold``, which override the settings ``evaluate --sweep`` saved
    with a checkpoint (``inference.localization_settings``)."""
    parser.add_argument("--norm", type=normalization,
                        help="minmax | max | percentile:P | pas[:P] | ivr:P (default: saved with the checkpoint "
                             "by evaluate --sweep, else minmax)")
    parser.add_argument("--threshold", type=unit_interval,
                        help="fixed threshold on the normalized map (default: saved by evaluate --sweep, else "
                             "per method and dataset)")


def read_config(path: Path) -> TrainConfig:
    """The TrainConfig saved at ``path`` (a run's config.json); errors name the file."""
    try:
        return TrainConfig.from_dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError) as error:  # JSONDecodeError is a ValueError
        raise WsolFastError(f"--config {path}: {error}") from error


def config_from_arguments(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """The flags given (sections' flags from ``fields.add_arguments``) over ``base`` (a saved
    config), or else over the dataset's preset and the defaults; ``--resize`` follows a new
    ``--image-size`` unless given. wsolevaluation: the dataset its metadata describes is
    resolved (``config.wsolevaluation_dataset``) and kept in ``data.metadata_dataset``; a new
    ``--metadata-root`` alone resolves it again."""
    cfg = base or TrainConfig()
    given = apply_arguments(args, cfg)
    if "data.metadata_root" in given and "data.metadata_dataset" not in given:
        cfg.data.metadata_dataset = None
    if cfg.data.dataset == "wsolevaluation":
        try:
            cfg.data.metadata_dataset = wsolevaluation_dataset(cfg.data)
        except ValueError as error:
            raise UsageError(str(error)) from None
    elif given & {"data.metadata_root", "data.metadata_dataset", "data.mask_root"}:
        raise UsageError(f"--metadata-root, --metadata-dataset and --mask-root are for --dataset wsolevaluation, "
                         f"not {cfg.data.dataset}")
    if base is None:
        cfg.apply_preset(preset_of(cfg.data))
        apply_arguments(args, cfg)
        if cfg.data.dataset != "synthetic" and "data.data_root" not in given:
            raise UsageError(f"--data-root is required for --dataset {cfg.data.dataset}")
    if "data.image_size" in given and "data.resize" not in given:
        cfg.data.resize = scaled_resize(cfg.data.image_size)
    cfg.validate()
    return cfg
