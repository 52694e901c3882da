"""The model of a saved checkpoint, checked: it fits the saved shape, the dataset's classes,
and its weights are usable (finite, a finite forward)."""
from pathlib import Path

from ..checkpoint import CheckpointError, load_checkpoint
from ..config import TrainConfig
from .health import model_problem
from .mobilenet_bas import MobileNetBAS


def model_from_checkpoint(path: str | Path, num_classes: int | None = None) -> tuple[MobileNetBAS, dict]:
    """Rebuild the model saved in a checkpoint; ``num_classes`` (the dataset's) must match."""
    state = load_checkpoint(path)
    return model_from_state(state, path, num_classes), state


def model_from_state(state: dict, path: str | Path, num_classes: int | None = None) -> MobileNetBAS:
    """The model of a loaded checkpoint ``state`` (read from ``path``, named in errors)."""
    saved = TrainConfig.from_dict(state["config"])
    if num_classes is not None and saved.model.num_classes != num_classes:
        raise ValueError(f"checkpoint {path} was trained for {saved.model.num_classes} classes, "
                         f"the dataset has {num_classes}")
    model = MobileNetBAS(saved.model.num_classes, saved.model.width_mult)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {path} does not fit MobileNetBAS(width_mult="
                              f"{saved.model.width_mult}): {error}") from error
    problem = model_problem(model)
    if problem:
        raise CheckpointError(f"checkpoint {path} is not usable: {problem}")
    return model
