"""The late stage's mean-map pass over the whole training set, sharded over the processes."""
import contextlib

import torch

from .. import collectives
from ..config import TrainConfig
from ..data import WSOLDataset, make_loader
from ..mean_maps import MeanMaps, class_mean_maps
from ..models import MobileNetBAS
from .progress import make_progress, print_warning


def compute_mean_maps(cfg: TrainConfig, model: MobileNetBAS, train_split) -> MeanMaps:
    """Class-mean foreground maps over every training image (test transform, eval mode). Each
    process reads its shard (every image exactly once over all); sums and counts are all-reduced,
    so every process returns the same maps, those of one process up to float summation order."""
    world = collectives.world_size()
    if len(train_split) < world:
        raise ValueError(f"class-mean maps: {len(train_split)} training images for {world} processes")
    device = torch.device(cfg.run.device)  # run_training resolved it to this process's device
    dataset = WSOLDataset(train_split, train=False, image_size=cfg.data.image_size, resize=cfg.data.resize)
    loader = make_loader(dataset, cfg.data.batch_size, loader=cfg.data.loader, workers=cfg.data.workers,
                         device=str(device), shard_id=collectives.rank(), num_shards=world,
                         skip_bad_images=cfg.data.skip_bad_images)
    with make_progress() if collectives.is_main() else contextlib.nullcontext() as progress:
        advance = None
        if progress is not None:
            task = progress.add_task("class-mean maps", total=len(dataset), info="", unit="images")
            advance = lambda n: progress.advance(task, n * world)  # noqa: E731 (shards advance alike)
        maps, counts = class_mean_maps(model.to(device), loader, cfg.model.num_classes, device, advance,
                                       reduce=collectives.all_reduce_sum_)
    mean_maps = MeanMaps(maps.cpu(), counts.cpu())
    if loader.skipped and collectives.is_main():
        print_warning(f"class-mean maps: {len(loader.skipped)} more image(s) left out while reading (this process)")
    if mean_maps.empty_classes and collectives.is_main():
        print_warning(f"classes without a training image (zero mean map): {mean_maps.empty_classes}")
    return mean_maps
