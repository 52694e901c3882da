"""DeepSpeed checkpoint files read without running code from them.

DeepSpeed's ``TorchCheckpointEngine`` loads every file of a checkpoint (model states, ZeRO
optimizer states) with ``weights_only=False``, so a run folder received from someone else could run
code on ``--resume``. ``WeightsOnlyLoads`` wraps the engine's checkpoint engine: every file
DeepSpeed reads goes through ``checkpoint.load_checkpoint`` (``weights_only=True``) with exactly
the non-tensor classes DeepSpeed stores allowed, and an unreadable or refused file is named.
It also saves enum members (ZeRO's stage) as their values: Python 3.11.0-3.11.4 pickle them as
``getattr(cls, name)``, a call no weights-only load may make, so such files could not be resumed.
"""
import enum
import importlib

from ..checkpoint import load_checkpoint

# The classes in DeepSpeed's own files besides tensors and plain data (ZeRO optimizer states).
DEEPSPEED_CLASSES = ("deepspeed.utils.tensor_fragment.fragment_address",
                     "deepspeed.runtime.zero.config.ZeroStageEnum",
                     "deepspeed.runtime.fp16.loss_scaler.LossScaler")


def deepspeed_safe_globals() -> tuple:
    """The classes of ``DEEPSPEED_CLASSES``, imported (DeepSpeed is imported already)."""
    classes = []
    for name in DEEPSPEED_CLASSES:
        module, _, attribute = name.rpartition(".")
        classes.append(getattr(importlib.import_module(module), attribute))
    return tuple(classes)


def plain_enums(obj):
    """``obj`` with every enum member inside dicts, lists and tuples replaced by its value."""
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, dict):
        copy = obj.copy()  # keeps the dict's type (OrderedDict, defaultdict)
        for key, value in obj.items():
            copy[key] = plain_enums(value)
        return copy
    if type(obj) in (list, tuple):  # not their subclasses (named tuples keep their fields)
        return type(obj)(plain_enums(value) for value in obj)
    return obj


class WeightsOnlyLoads:
    """A DeepSpeed checkpoint engine whose ``load`` reads with ``weights_only=True`` and whose
    ``save`` stores enum members as values; everything else (committing...) is the wrapped
    engine's."""

    def __init__(self, engine):
        self.engine = engine
        self.safe_globals = deepspeed_safe_globals()

    def __getattr__(self, name: str):
        return getattr(self.engine, name)

    def load(self, path: str, map_location=None):
        return load_checkpoint(path, map_location, self.safe_globals)

    def save(self, state_dict, path: str):
        return self.engine.save(plain_enums(state_dict), path)


def load_weights_only(engine) -> None:
    """Make a ``DeepSpeedEngine`` read its checkpoints with ``weights_only=True`` (and save enum
    members as values, so that its files always load so)."""
    if not isinstance(engine.checkpoint_engine, WeightsOnlyLoads):
        engine.checkpoint_engine = WeightsOnlyLoads(engine.checkpoint_engine)
