"""Argument types of the evaluation flags, checked up front like the config fields' (``fields``):
a bad value stops the command at once with ``argument --NAME: must be ..., got ...`` (exit 2)."""
import torch

from .engine.evaluate import parse_map_class
from .fields import checked
from .ops.eval_reference import parse_normalization

threshold_step = checked(float, lambda v: 0 < v < 1, "a number in (0, 1)")


def _normalization(text: str) -> str:
    parse_normalization(text)
    return text


def _map_class(text: str) -> str:
    parse_map_class(text)
    return text


def _device(text: str) -> str:
    if text != "auto":
        try:
            torch.device(text)
        except RuntimeError as error:
            raise ValueError(str(error)) from None
    return text


device = checked(_device, lambda v: True, "auto, cpu or cuda[:N]")
normalization = checked(_normalization, lambda v: True, "minmax | max | percentile:P | pas[:P] | ivr:P, P in [0, 100]")
map_class = checked(_map_class, lambda v: True, "gt | top1 | topk:K | all")
