"""Argument types shared by every command line: each checks its value up front, so a bad number
stops the command at once with ``argument --NAME: must be ..., got ...`` (exit status 2)."""
import argparse
import math
from collections.abc import Callable

import torch

from .engine.evaluate import parse_map_class
from .engine.optim import LR_MULTIPLIERS
from .ops.eval_reference import parse_normalization

FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def _checked(convert: Callable[[str], object], test: Callable[[object], bool], what: str):
    """An argparse type: ``convert(text)``, refused unless ``test(value)``; ``what`` says what is wanted."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value

    parse.__name__ = what
    return parse


positive_int = _checked(int, lambda v: v > 0, "a positive integer")
non_negative_int = _checked(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _checked(float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
non_negative_float = _checked(float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")
unit_interval = _checked(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")
fraction = _checked(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
threshold_step = _checked(float, lambda v: 0 < v < 1, "a number in (0, 1)")
learning_rate = _checked(float, lambda v: 0 < v and v * max(LR_MULTIPLIERS.values()) <= FLOAT32_MAX,
                         f"a number > 0 whose x{max(LR_MULTIPLIERS.values()):g} (the heads' biases) fits float32")


def _normalization(text: str) -> str:
    parse_normalization(text)
    return text


def _map_class(text: str) -> str:
    parse_map_class(text)
    return text


normalization = _checked(_normalization, lambda v: True, "minmax | max | percentile:P | pas[:P] | ivr:P, P in [0, 100]")
map_class = _checked(_map_class, lambda v: True, "gt | top1 | topk:K | all")
