"""MobileNetV1-BAS (METHOD.md §2).

Backbone ``features`` (14 blocks, block 6 with stride 1 so the generator works at 1/8 of the
input), a classifier head on the last two blocks (``tail``) and a sigmoid generator on the
block-11 output ``x4``. The background branch reruns ``tail`` and ``cls_head`` on
``detach(x4) * (1 - fg)`` with detached weights and throw-away BatchNorm buffers, so its loss
reaches only the generator (and through it the backbone) and never moves running statistics.
"""
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from .. import ops

# (out_channels, stride) of blocks 1..13; block 0 is conv_bn(3, 32, stride 2).
_DEPTHWISE_BLOCKS = [
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 1),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
]
TAIL_START = 12  # blocks 12-13 form the tail; blocks 0-11 give x4.


def conv_bn(inp: int, out: int, stride: int) -> nn.Sequential:
    """Conv3x3 (no bias) -> BN -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(inp, out, 3, stride, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)
    )


def conv_dw(inp: int, out: int, stride: int) -> nn.Sequential:
    """Depthwise Conv3x3 -> BN -> ReLU -> pointwise Conv1x1 -> BN -> ReLU (no biases)."""
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp),
        nn.ReLU(inplace=True),
        nn.Conv2d(inp, out, 1, 1, 0, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True),
    )


def _scaled(channels: int, width_mult: float) -> int:
    return max(8, int(channels * width_mult))


@dataclass
class BASOutput:
    """One forward pass. B = batch, C = classes, maps at 1/8 (fg) and 1/16 (class maps) of the input.

    score1: (B, C) logits from the classifier, spatial mean of ``class_maps`` (never negative).
    score2: (B, C) foreground-guided logits, or None without labels.
    score_bg: (B,) background score at the label, or None when the background branch is off.
    fg_map: (B, 1, H/8, W/8) foreground map in (0, 1) of the label's class, or None without labels.
    class_maps: (B, C, H/16, W/16) class feature maps F (the CAM of the baseline).
    fg_area: (B,) mean of each foreground map (the area term), or None without labels.
    """

    score1: torch.Tensor
    score2: torch.Tensor | None
    score_bg: torch.Tensor | None
    fg_map: torch.Tensor | None
    class_maps: torch.Tensor
    fg_area: torch.Tensor | None = None


class MobileNetBAS(nn.Module):
    """MobileNetV1-BAS for ``num_classes`` classes; ``width_mult`` scales every channel count
    (1.0 is the paper's network; smaller widths are for CPU demos and tests)."""

    def __init__(self, num_classes: int, width_mult: float = 1.0):
        super().__init__()
        self.num_classes = num_classes
        self.width_mult = width_mult
        channels = _scaled(32, width_mult)
        blocks = [conv_bn(3, channels, 2)]
        for out, stride in _DEPTHWISE_BLOCKS:
            blocks.append(conv_dw(channels, _scaled(out, width_mult), stride))
            channels = _scaled(out, width_mult)
        self.features = nn.Sequential(*blocks)
        x4_channels = _scaled(512, width_mult)
        head = channels
        self.cls_head = nn.Sequential(
            nn.Conv2d(head, head, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(head, head, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(head, num_classes, 1), nn.ReLU(),
        )
        # Generator logits; the sigmoid is applied by ops.foreground_epilogue (fused on GPU).
        self.loc_head = nn.Conv2d(x4_channels, num_classes, 3, padding=1)
        for layer in [*self.cls_head, self.loc_head]:
            if isinstance(layer, nn.Conv2d):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)

    def backbone(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalized images -> x4 (B, 512w, H/8, W/8)."""
        if images.shape[-1] % 16 or images.shape[-2] % 16:
            raise ValueError(f"input size {tuple(images.shape[-2:])} must be a multiple of 16")
        return self.features[:TAIL_START](images)

    def classifier(self, x4: torch.Tensor) -> torch.Tensor:
        """x4 -> class maps F (B, C, H/16, W/16)."""
        return self.cls_head(self.features[TAIL_START:](x4))

    def generator_maps(self, x4: torch.Tensor) -> torch.Tensor:
        """All C generator maps, (B, C, H/8, W/8) in (0, 1) (evaluation)."""
        return torch.sigmoid(self.loc_head(x4))

    def class_generator_logits(self, x4: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Generator logits of one class per sample, (B, 1, H/8, W/8): the label's 3x3 filter
        only (C times cheaper than all maps, same function). One batched matmul gives the
        responses of the filter's 9 taps at every pixel, (B, 9, H, W); a fixed one-hot 3x3
        convolution adds them up shifted into place (the grouped convolution that does the
        same is 10-20x slower on the CPU, backward included)."""
        batch, _, height, width = x4.shape
        taps = self.loc_head.weight[labels].flatten(2).transpose(1, 2)  # (B, 9, K)
        responses = torch.bmm(taps, x4.flatten(2)).view(batch, 9, height, width)
        shift_and_add = torch.eye(9, device=x4.device, dtype=responses.dtype).view(1, 9, 3, 3)
        logits = nn.functional.conv2d(responses, shift_and_add, padding=1)
        return logits + self.loc_head.bias[labels].view(-1, 1, 1, 1)

    def background_class_maps(self, x_bg: torch.Tensor) -> torch.Tensor:
        """Tail + classifier on the background input with detached weights and cloned BN
        buffers: gradients flow to ``x_bg`` only and the real running statistics never move."""
        path = nn.Sequential(*self.features[TAIL_START:], self.cls_head)
        state = {name: p.detach() for name, p in path.named_parameters()}
        state.update({name: b.clone() for name, b in path.named_buffers()})
        return functional_call(path, state, (x_bg,))

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                background: bool = True) -> BASOutput:
        """images (B, 3, H, W), labels (B,) int64 or None. Without labels only the class
        scores and maps are computed; with ``background=False`` the background branch is skipped."""
        x4 = self.backbone(images)
        class_maps = self.classifier(x4)
        score1 = class_maps.mean(dim=(2, 3))
        if labels is None:
            return BASOutput(score1, None, None, None, class_maps)
        fg, area, pooled = ops.foreground_epilogue(self.class_generator_logits(x4, labels))
        score2 = ops.guided_score(class_maps, pooled)
        score_bg = None
        if background:
            bg_maps = self.background_class_maps(ops.background_product(x4, fg))
            score_bg = bg_maps.mean(dim=(2, 3)).gather(1, labels[:, None]).squeeze(1)
        return BASOutput(score1, score2, score_bg, fg, class_maps, area)
