"""DALI loader against the torch DataLoader path: shapes, alignment, sharding, bad files. The
tests that decode run with CPU decoding, and also with GPU decoding (nvJPEG, ``"mixed"``) where
a GPU is present.

Agreement with the torch path, in grey levels (max per pixel, mean), per DALI decoder
(``AGREEMENT``): with CPU decoding both paths decode with libjpeg-turbo and cut the same pixels;
they differ only in the resize filter (DALI linear vs PIL bilinear, both antialiased): 5 and 0.5.
nvJPEG uses another IDCT and another chroma upsampling than libjpeg-turbo's "fancy" one, which
on these noisy 4:2:0 JPEGs moves single pixels further: 24 and 2.0 (a bound to be confirmed on
a GPU; the test prints what it measures). The test images carry +-40 levels of pixel noise: a
crop one pixel off would differ by tens of levels.
"""
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from wsol_fast.config import TrainConfig
from wsol_fast.commands.train import train_config, train_parser
from wsol_fast.data import (
    IMAGENET_STD,
    ImageReadError,
    SampleLoader,
    TorchLoader,
    WSOLDataset,
    WSOLSplit,
    make_loader,
    shard_range,
)
from wsol_fast.data import dali_pipelines
from wsol_fast.data.dali_files import header_problem
from wsol_fast.data.dali_loader import DaliLoader
from wsol_fast.data.augmentation import RESIZED_CROP_SCALE, resized_crop_box, resized_crop_params

SIZE, RESIZE, BATCH, COUNT = 32, 37, 4, 11  # 11 samples: not a multiple of the batch or of 2, 3 ranks
LEVEL = 1 / 255 / min(IMAGENET_STD)  # one grey level in normalized units (the largest step)
AGREEMENT = {"cpu": (5, 0.5), "cuda": (24, 2.0)}  # DALI device -> (max, mean) grey levels
DALI_DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]
KINDS = ["torch", "dali-cpu", pytest.param("dali-cuda", marks=pytest.mark.gpu)]


def write_image(path, rng, width, height):
    """A smooth random colour field plus +-40 levels of pixel noise, as a quality-95 JPEG."""
    base = Image.fromarray((rng.random((4, 4, 3)) * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC)
    pixels = np.asarray(base).astype(np.int16) + rng.integers(-40, 41, (height, width, 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=95)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """COUNT JPEGs of odd, non-square sizes; 3 classes; one random box each."""
    root = tmp_path_factory.mktemp("dali")
    rng = np.random.default_rng(7)
    paths, sizes, boxes = [], [], []
    for index in range(COUNT):
        width, height = (int(v) for v in rng.integers(33, 95, 2))
        write_image(root / f"{index:02d}.jpg", rng, width, height)
        x0, y0 = rng.uniform(0, width / 2), rng.uniform(0, height / 2)
        paths.append(root / f"{index:02d}.jpg")
        sizes.append((width, height))
        boxes.append([[x0, y0, rng.uniform(x0 + 1, width), rng.uniform(y0 + 1, height)]])
    labels = rng.permutation(np.arange(COUNT) % 3)
    return WSOLSplit(root, paths, labels, boxes, sizes, ["a", "b", "c"])


def dataset(split, phase, **options):
    """"bas" / "wsolevaluation" (evaluation), "train" (BAS crop), "resized" (random resized crop)."""
    if phase in ("bas", "wsolevaluation"):
        return WSOLDataset(split, train=False, image_size=SIZE, resize=RESIZE, eval_protocol=phase, **options)
    crop = "bas" if phase == "train" else "random-resized"
    return WSOLDataset(split, train=True, image_size=SIZE, resize=RESIZE, seed=5, train_crop=crop, **options)


def one_epoch(loader, epoch=0):
    """(images on the CPU, labels, indices) of one epoch, concatenated, and the batch sizes."""
    loader.set_epoch(epoch)
    batches = list(loader)
    images, labels, indices = (torch.cat(parts) for parts in zip(*batches))
    return images.cpu(), labels, indices, [len(b[2]) for b in batches]


def dali(data, device="cpu", **options):
    """A DALI loader decoding on ``device``'s side ("cpu", or "cuda": nvJPEG)."""
    loader = make_loader(data, BATCH, loader="dali", device=device, **{"workers": 2, **options})
    decoder = "mixed" if device == "cuda" else "cpu"
    assert isinstance(loader, DaliLoader) and str(loader).startswith(f"DALI, {decoder} decoding")
    return loader


def loader_of(kind, data, **options):
    """The loader of ``kind``: "torch", "dali-cpu" or "dali-cuda"."""
    if kind == "torch":
        return make_loader(data, BATCH, loader="torch", **options)
    return dali(data, device=kind.removeprefix("dali-"), **options)


def assert_agrees(images, reference, device):
    """``images`` from DALI decoding on ``device`` within AGREEMENT of the torch path's."""
    difference = (images - reference).abs() / LEVEL
    most, mean = AGREEMENT[device]
    print(f"DALI {device} vs torch: max {difference.max():.2f}, mean {difference.mean():.3f} grey levels")
    assert difference.max() <= most + 1e-3 and difference.mean() <= mean


@pytest.mark.parametrize("device", DALI_DEVICES)
@pytest.mark.parametrize("phase", ["bas", "wsolevaluation", "train", "resized"])
def test_batches_have_the_promised_shapes_and_labels(split, phase, device):
    train = phase in ("train", "resized")
    loader = dali(dataset(split, phase), device, shuffle=train, drop_last=train)
    images, labels, indices, sizes = one_epoch(loader)
    assert images.dtype == torch.float32 and labels.dtype == torch.int64 and indices.dtype == torch.int64
    assert images.shape[1:] == (3, SIZE, SIZE) and torch.isfinite(images).all()
    assert sizes == ([BATCH] * (COUNT // BATCH) if train else [4, 4, 3]) and len(loader) == len(sizes)
    np.testing.assert_array_equal(labels.numpy(), split.labels[indices.numpy()])
    if not train:
        assert indices.tolist() == list(range(COUNT))


@pytest.mark.parametrize("device", DALI_DEVICES)
@pytest.mark.parametrize("phase", ["bas", "wsolevaluation", "train", "resized"])
def test_dali_and_torch_give_the_same_batches(split, phase, device):
    train = phase in ("train", "resized")
    data = dataset(split, phase)
    for epoch in (0, 1):
        fast = one_epoch(dali(data, device, shuffle=train), epoch)
        torch_path = one_epoch(make_loader(data, BATCH, loader="torch", shuffle=train, workers=0), epoch)
        assert fast[3] == torch_path[3]
        assert torch.equal(fast[1], torch_path[1]) and torch.equal(fast[2], torch_path[2])
        assert_agrees(fast[0], torch_path[0], device)


def test_training_crop_is_exactly_the_host_drawn_window(split):
    """DALI's training crop is the host's (top, left) window of the resized image, flipped with it
    (a window position in 1/37ths is not exact in float: a rare pixel may round one level off)."""
    train = dataset(split, "train")
    resized = WSOLDataset(split, train=False, image_size=RESIZE, resize=RESIZE)  # resize only
    full = one_epoch(dali(resized))[0]
    images, _, indices, _ = one_epoch(dali(train, shuffle=True), epoch=3)
    flips = 0
    train.set_epoch(3)
    tops, lefts, flipped = train.augmentation(indices.numpy())
    for image, index, top, left, flip in zip(images, indices.tolist(), tops.tolist(), lefts.tolist(),
                                             flipped.tolist()):
        expected = full[index, :, top:top + SIZE, left:left + SIZE]
        difference = (image - (expected.flip(-1) if flip else expected)).abs()
        assert difference.max() <= LEVEL + 1e-6 and (difference > 1e-6).float().mean() < 0.01
        flips += flip
    assert 0 < flips < len(indices)


@pytest.mark.parametrize("width, height", [(500, 375), (61, 97)])
def test_resized_crop_boxes_lie_inside_the_image_with_the_drawn_area(width, height):
    areas = []
    for params in zip(*(column.tolist() for column in resized_crop_params(0, 0, np.arange(300)))):
        left, top, crop_w, crop_h = resized_crop_box(width, height, *params[:4])
        assert 0 <= left and left + crop_w <= width and 0 <= top and top + crop_h <= height
        assert crop_w >= 1 and crop_h >= 1
        areas.append(crop_w * crop_h / (width * height))
    assert min(areas) >= RESIZED_CROP_SCALE[0] * 0.9 and max(areas) <= 1
    assert np.std(areas) > 0.1  # spread over the range, not stuck at the fallback


def test_training_order_reshuffles_every_epoch_and_follows_the_seed(split):
    data = dataset(split, "train")
    loader = dali(data, shuffle=True)
    orders = [one_epoch(loader, epoch)[2].tolist() for epoch in (0, 1, 0)]
    assert sorted(orders[0]) == list(range(COUNT)) and orders[0] != orders[1] and orders[0] == orders[2]
    again = one_epoch(dali(dataset(split, "train"), shuffle=True), 0)
    assert again[2].tolist() == orders[0] and torch.equal(again[0], one_epoch(loader, 0)[0])


@pytest.mark.parametrize("protocol", ["bas", "wsolevaluation"])
def test_boxes_follow_each_yielded_sample(split, protocol):
    data = dataset(split, protocol)
    _, _, indices, _ = one_epoch(dali(data))
    for index in indices.tolist():
        width, height = split.sizes[index]
        box = split.boxes[index].astype(np.float64)
        scale = np.array([width, height, width, height], dtype=np.float64)
        if protocol == "bas":
            offset = 2  # torchvision's center crop of 32 in 37: int(round(2.5))
            expected = np.clip(box * RESIZE / scale, offset, offset + SIZE) - offset
        else:
            expected = np.floor(box * SIZE / scale)
        np.testing.assert_allclose(data.eval_boxes(index), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_evaluation_shards_read_every_sample_exactly_once(split, world):
    data = dataset(split, "bas")
    seen = Counter()
    for rank in range(world):
        loader = dali(data, shard_id=rank, num_shards=world)
        _, labels, indices, sizes = one_epoch(loader)
        start, stop = shard_range(COUNT, rank, world)
        assert indices.tolist() == list(range(start, stop)) and sum(sizes) == stop - start
        np.testing.assert_array_equal(labels.numpy(), split.labels[indices.numpy()])
        seen.update(indices.tolist())
    assert seen == Counter(range(COUNT))


@pytest.mark.parametrize("world", [2, 3])
def test_training_shards_are_disjoint_and_equal(split, world):
    data = dataset(split, "train")
    for epoch in (0, 1):
        parts = [one_epoch(dali(data, shuffle=True, shard_id=rank, num_shards=world), epoch)[2].tolist()
                 for rank in range(world)]
        assert {len(part) for part in parts} == {COUNT // world}
        everything = sum(parts, [])
        assert len(set(everything)) == len(everything)


def broken_split(split, tmp_path, damage):
    """``split`` with sample 5 replaced by a damaged file."""
    data = split.image_paths[1].read_bytes()
    bad = tmp_path / "broken.jpg"
    if damage == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "scrambled":  # valid header and end marker, nonsense in between: passes header checks
        bad.write_bytes(data[:20] + bytes(np.random.default_rng(0).integers(0, 256, 400, dtype=np.uint8))
                        + b"\xff\xd9")
    elif damage == "empty":
        bad.write_bytes(b"")
    elif damage == "directory":
        bad.mkdir()
    paths = list(split.image_paths)
    paths[5] = bad
    return replace(split, image_paths=paths), bad


@pytest.mark.parametrize("damage", ["truncated", "scrambled", "missing", "empty", "directory"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_file_fails_with_its_name(split, tmp_path, damage, kind):
    broken, bad = broken_split(split, tmp_path, damage)
    with pytest.raises(ImageReadError, match=str(bad)):
        list(loader_of(kind, dataset(broken, "bas"), workers=0))


@pytest.mark.parametrize("damage", ["truncated", "scrambled", "missing"])
@pytest.mark.parametrize("kind", KINDS)
def test_skipped_bad_files_are_counted_and_labels_stay_aligned(split, tmp_path, damage, kind):
    broken, bad = broken_split(split, tmp_path, damage)
    data = dataset(broken, "bas")
    with pytest.warns(RuntimeWarning, match="broken.jpg"):
        loader = loader_of(kind, data, workers=0, skip_bad_images=True)
        images, labels, indices, _ = one_epoch(loader)
    assert indices.tolist() == [i for i in range(COUNT) if i != 5]
    assert [(index, path) for index, path, _ in loader.skipped] == [(5, bad)]
    np.testing.assert_array_equal(labels.numpy(), split.labels[indices.numpy()])
    reference = one_epoch(make_loader(dataset(split, "bas"), BATCH, loader="torch", workers=0))[0]
    keep = torch.tensor([i != 5 for i in range(COUNT)])
    assert_agrees(images, reference[keep], "cuda" if kind == "dali-cuda" else "cpu")


class GpuRefusesOneFile(DaliLoader):
    """DALI in CPU mode posing as GPU decoding, where sample ``refused`` fails with an error that
    names no file (as nvJPEG's can) though the host decodes it."""

    refused = 5

    def __init__(self, *args, **options):
        super().__init__(*args, **options)
        self.decoder_device = "mixed"

    def build(self, samples):
        self.decoder_device = "cpu"
        try:
            return super().build(samples)
        finally:
            self.decoder_device = "mixed"

    def read_batch(self, pipeline, expected):
        if self.refused in expected:
            raise RuntimeError("nvjpegDecodeJpeg failed: NVJPEG_STATUS_EXECUTION_FAILED")
        self.decoder_device = "cpu"
        try:
            return super().read_batch(pipeline, expected)
        finally:
            self.decoder_device = "mixed"


@pytest.mark.parametrize("skip", [False, True])
def test_a_file_only_the_gpu_refuses_is_found_and_follows_the_skip_flag(split, skip):
    loader = GpuRefusesOneFile(dataset(split, "bas"), BATCH, workers=0, skip_bad_images=skip)
    bad = split.image_paths[GpuRefusesOneFile.refused]
    if not skip:
        with pytest.raises(ImageReadError, match=f"{bad}.*decodes on the host but fails on the GPU"):
            one_epoch(loader)
        return
    with pytest.warns(RuntimeWarning, match=str(bad)):
        images, labels, indices, _ = one_epoch(loader)
    assert indices.tolist() == [i for i in range(COUNT) if i != GpuRefusesOneFile.refused]
    assert [(index, path) for index, path, _ in loader.skipped] == [(GpuRefusesOneFile.refused, bad)]
    np.testing.assert_array_equal(labels.numpy(), split.labels[indices.numpy()])


def test_a_bad_file_found_while_training_keeps_the_step_count(split, tmp_path):
    """Every rank must take the same number of steps: a file that fails in DALI mid-epoch is
    replaced, the batches stay full and as many as planned."""
    broken, bad = broken_split(split, tmp_path, "scrambled")
    eight = replace(broken, image_paths=broken.image_paths[:8], labels=broken.labels[:8],
                    boxes=broken.boxes[:8], sizes=broken.sizes[:8])
    with pytest.warns(RuntimeWarning, match="broken.jpg"):
        loader = make_loader(dataset(eight, "train"), BATCH, loader="dali", shuffle=True, drop_last=True,
                             workers=0, skip_bad_images=True)
        planned = len(loader)
        images, labels, indices, sizes = one_epoch(loader)
    assert planned == 2 and sizes == [BATCH, BATCH]
    assert 5 not in indices.tolist() and set(indices.tolist()) == set(range(8)) - {5}
    np.testing.assert_array_equal(labels.numpy(), eight.labels[indices.numpy()])


def test_header_check_tells_truncated_from_whole(split, tmp_path):
    assert header_problem(split.image_paths[0]) is None
    truncated, bad = broken_split(split, tmp_path, "truncated")
    assert "truncated jpeg" in header_problem(bad)
    (tmp_path / "note.jpg").write_text("not an image")
    assert "not an image" in header_problem(tmp_path / "note.jpg")
    assert header_problem(tmp_path / "absent.jpg") == "missing"


def test_without_dali_the_factory_says_so_and_uses_torch(split, monkeypatch):
    monkeypatch.setattr(dali_pipelines, "dali_import_error", lambda: ImportError("No module named 'nvidia.dali'"))
    with pytest.warns(RuntimeWarning, match="DALI is not importable.*nvidia.dali.*torch DataLoader"):
        loader = make_loader(dataset(split, "bas"), BATCH, loader="dali", workers=0)
    assert isinstance(loader, TorchLoader) and isinstance(loader, SampleLoader)


def test_bad_loader_arguments_are_refused(split):
    with pytest.raises(ValueError, match="loader must be one of"):
        make_loader(dataset(split, "bas"), BATCH, loader="ffcv")
    with pytest.raises(ValueError, match="shard_id"):
        make_loader(dataset(split, "bas"), BATCH, shard_id=3, num_shards=3)
    with pytest.raises(ValueError, match="decoder_device='mixed' needs device_id set"):
        dali_pipelines.build_pipeline("evaluation", [], [], SIZE, RESIZE, BATCH, 1, decoder_device="mixed")
    with pytest.raises(ValueError, match="train_crop"):
        WSOLDataset(split, train=True, train_crop="mixup")


def test_config_and_command_line_carry_the_loader(tmp_path):
    old = TrainConfig().to_dict()
    for name in ("loader", "skip_bad_images", "train_crop"):
        del old["data"][name]
    restored = TrainConfig.from_dict(old)
    assert (restored.data.loader, restored.data.skip_bad_images, restored.data.train_crop) == ("dali", False, "bas")
    with pytest.raises(ValueError, match="data.loader"):
        TrainConfig.from_dict({"data": {"loader": "ffcv"}})
    args = train_parser().parse_args(["--loader", "torch", "--skip-bad-images", "--train-crop", "random-resized",
                                      "--out", str(tmp_path)])
    data = train_config(args).data
    assert (data.loader, data.skip_bad_images, data.train_crop) == ("torch", True, "random-resized")


@pytest.mark.parametrize("kind", ["dali", "torch"])
def test_channels_last_batches_hold_the_same_images(split, kind):
    """``channels_last=True``: the same batches in channels_last memory (DALI writes HWC and the
    batch is a permuted view of it, no copy; the torch loader's workers convert)."""
    data = dataset(split, "train")
    options = dict(loader=kind, shuffle=True, workers=2 if kind == "dali" else 1)
    plain = make_loader(data, BATCH, **options)
    last = make_loader(data, BATCH, channels_last=True, **options)
    plain.set_epoch(1)
    last.set_epoch(1)
    plain_batches, last_batches = list(plain), list(last)
    assert len(plain_batches) == len(last_batches) == len(plain) > 0
    for (a, labels_a, indices_a), (b, labels_b, indices_b) in zip(plain_batches, last_batches):
        assert b.is_contiguous(memory_format=torch.channels_last) and not b.is_contiguous()
        assert torch.equal(a, b) and torch.equal(labels_a, labels_b) and torch.equal(indices_a, indices_b)
