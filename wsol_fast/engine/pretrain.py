"""Backbone pre-training as a plain classifier (features -> global pool -> linear), standing in
for ImageNet pre-training where no weights can be downloaded (the synthetic demo).

The result is saved as a pytorch-ssd style base net (``{block}.{layer}.*`` keys plus ``fc``),
the same format as ``mobilenet_v1_with_relu_69_5.pth``, so ``--pretrained`` loads it by position.
"""
import time
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import atomic_save
from ..config import DataConfig, ModelConfig, RunConfig
from ..data import WSOLDataset, build_loader
from ..models import MobileNetBAS
from .progress import JsonLog, make_progress

PRETRAIN_EPOCHS = 12
PRETRAIN_LR = 0.1  # peak of the one-cycle schedule


def pretrain_backbone(train_split, out: str | Path, width_mult: float = ModelConfig.width_mult,
                      image_size: int = DataConfig.image_size, resize: int = DataConfig.resize,
                      epochs: int = PRETRAIN_EPOCHS, lr: float = PRETRAIN_LR, batch_size: int = DataConfig.batch_size,
                      workers: int = DataConfig.workers, seed: int = RunConfig.seed, device: str = "cpu",
                      train_crop: str = DataConfig.train_crop) -> Path:
    """Train ``features`` + pool + linear on ``train_split`` (SGD, one-cycle lr, ``train_crop``
    augmentation); returns the path of the saved base net (``out/backbone.pth``)."""
    torch.manual_seed(seed)
    features = MobileNetBAS(train_split.num_classes, width_mult).features
    channels = features[-1][3].out_channels
    net = nn.Sequential(features, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(channels, train_split.num_classes)).to(device)
    dataset = WSOLDataset(train_split, train=True, image_size=image_size, resize=resize, seed=seed,
                          train_crop=train_crop)
    steps = len(dataset) // batch_size
    if steps == 0:
        raise ValueError(f"pretrain: {len(dataset)} images is less than one batch of {batch_size}")
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps)
    log = JsonLog(Path(out) / "log.jsonl")
    with make_progress() as progress:
        for epoch in range(epochs):
            loader = build_loader(dataset, batch_size, shuffle=True, num_workers=workers, seed=seed,
                                  epoch=epoch, drop_last=True)
            task = progress.add_task(f"pretrain epoch {epoch + 1}/{epochs}", total=steps, info="", unit="step")
            # sums stay on the device (no host sync per step); read once at the epoch's end
            loss_sum, correct = torch.zeros((), device=device), torch.zeros((), dtype=torch.int64, device=device)
            start = time.perf_counter()
            for images, labels, _ in loader:
                images, labels = images.to(device), labels.to(device)
                logits = net(images)
                loss = nn.functional.cross_entropy(logits, labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                loss_sum += loss.detach() * len(labels)
                correct += (logits.argmax(1) == labels).sum()
                progress.advance(task)
            images_seen = steps * batch_size
            record = {"run": "pretrain", "epoch": epoch + 1, "loss": float(loss_sum) / images_seen,
                      "top1": 100.0 * float(correct) / images_seen,
                      "images_per_s": images_seen / (time.perf_counter() - start)}
            progress.update(task, info=f"loss={record['loss']:.3f} top1={record['top1']:.1f}")
            log.write(record)
    state = {k: v.cpu() for k, v in features.state_dict().items()}
    state.update({"fc.weight": net[3].weight.detach().cpu(), "fc.bias": net[3].bias.detach().cpu()})
    return atomic_save(state, Path(out) / "backbone.pth")
