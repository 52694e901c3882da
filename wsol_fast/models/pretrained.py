"""Load ImageNet-pretrained MobileNetV1 weights into ``MobileNetBAS.features``.

Two formats are recognized from the keys of the file:

* **pytorch-ssd** (``mobilenet_v1_with_relu_69_5.pth``): a ``Sequential`` of conv_bn/conv_dw
  blocks (keys ``0.0.weight`` or ``model.0.0.weight`` ...). BAS copies it into blocks 0-13 **by
  position**; so does this loader, checking every shape.
* **timm** ``mobilenetv1_100``: ``conv_stem``, ``bn1``, ``blocks.S.R.{conv_dw,bn1,conv_pw,bn2}``,
  mapped **by name** (blocks in stage/repeat order become blocks 1-13).

Classifier weights in the file (``fc``, ``classifier``) are ignored; the heads stay new. Any
missing, extra or mis-shaped backbone tensor raises ``PretrainedMismatchError`` naming it.
"""
import re
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import load_checkpoint
from ..errors import WsolFastError

_CLASSIFIER_KEYS = re.compile(r"^(fc|classifier|head)\.")
_TIMM_BLOCK = re.compile(r"^blocks\.(\d+)\.(\d+)\.(conv_dw|bn1|conv_pw|bn2)\.(.+)$")
_TIMM_LAYER_INDEX = {"conv_dw": 0, "bn1": 1, "conv_pw": 3, "bn2": 4}


class PretrainedMismatchError(WsolFastError, ValueError):
    """The pretrained file does not fit the backbone."""


def _backbone_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop classifier entries and BN ``num_batches_tracked`` counters."""
    return {k: v for k, v in state.items()
            if not _CLASSIFIER_KEYS.match(k) and not k.endswith("num_batches_tracked")}


def _timm_to_features(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Rename timm mobilenetv1 keys to ``features.i.j.*`` keys."""
    blocks = sorted({(int(m[1]), int(m[2])) for k in state if (m := _TIMM_BLOCK.match(k))})
    block_index = {stage_repeat: i + 1 for i, stage_repeat in enumerate(blocks)}
    renamed = {}
    for key, value in state.items():
        if key.startswith("conv_stem."):
            renamed["0.0." + key.removeprefix("conv_stem.")] = value
        elif key.startswith("bn1."):
            renamed["0.1." + key.removeprefix("bn1.")] = value
        elif m := _TIMM_BLOCK.match(key):
            index = block_index[(int(m[1]), int(m[2]))]
            renamed[f"{index}.{_TIMM_LAYER_INDEX[m[3]]}.{m[4]}"] = value
        else:
            raise PretrainedMismatchError(f"{path}: unexpected key {key!r} in a timm mobilenetv1 state dict")
    return renamed


def _unwrap(obj, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PretrainedMismatchError(f"{path}: not a state dict of tensors")
    return {k.removeprefix("module.").removeprefix("model."): v for k, v in obj.items()}


def load_pretrained_backbone(features: nn.Sequential, path: str | Path) -> str:
    """Copy the weights in ``path`` into ``features`` (14 blocks); returns the detected format."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights not found: {path}")
    state = _backbone_tensors(_unwrap(load_checkpoint(path), path))
    targets = {k: v for k, v in features.state_dict().items() if not k.endswith("num_batches_tracked")}
    if "conv_stem.weight" in state:
        source, kind = _timm_to_features(state, path), "timm"
        missing = sorted(set(targets) - set(source))
        extra = sorted(set(source) - set(targets))
        if missing or extra:
            raise PretrainedMismatchError(f"{path}: timm weights do not fit the backbone; "
                                          f"missing {missing[:5]}, unexpected {extra[:5]}")
        pairs = [(key, key, source[key]) for key in targets]
    else:
        kind = "pytorch-ssd"
        if len(state) != len(targets):
            raise PretrainedMismatchError(
                f"{path}: {len(state)} backbone tensors in the file, the backbone has {len(targets)} "
                f"(width_mult must be 1.0 for ImageNet MobileNetV1 weights)")
        pairs = [(target, src, value) for target, (src, value) in zip(targets, state.items())]
    for target, src, value in pairs:
        if targets[target].shape != value.shape:
            raise PretrainedMismatchError(
                f"{path}: {src} has shape {tuple(value.shape)}, "
                f"features.{target} needs {tuple(targets[target].shape)} "
                "(ImageNet MobileNetV1 weights need width_mult 1.0)")
    with torch.no_grad():
        for target, _, value in pairs:
            targets[target].copy_(value)
    return kind
