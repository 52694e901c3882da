"""WSOLDataset, build_loader and the load_split registry."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from wsol_fast.data import datasets
from wsol_fast.data import (
    DATASETS,
    MARKER_NAME,
    ImageReadError,
    WSOLDataset,
    WSOLSplit,
    bas_boxes,
    build_loader,
    make_loader,
    load_split,
    normalize_pixels,
    read_cub,
    resize_boxes,
    scaled_resize,
)

SIZE = 40
RESIZE = scaled_resize(SIZE)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.fixture(scope="module")
def train_split(tiny_synthetic_root):
    return read_cub(tiny_synthetic_root, "train")


@pytest.fixture(scope="module")
def test_split(tiny_synthetic_root):
    return read_cub(tiny_synthetic_root, "test")


def loader_items(loader):
    """All (images, labels, indices) of one pass, concatenated."""
    images, labels, indices = zip(*loader)
    return torch.cat(images), torch.cat(labels), torch.cat(indices)


@pytest.mark.parametrize("train", [True, False])
def test_items_are_aligned_with_the_split(train_split, train):
    dataset = WSOLDataset(train_split, train=train, image_size=SIZE, resize=RESIZE)
    assert len(dataset) == len(train_split)
    for index in range(len(dataset)):
        image, label, returned_index = dataset[index]
        assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.uint8
        assert isinstance(label, int) and label == train_split.labels[index]
        assert isinstance(returned_index, int) and returned_index == index


def test_train_augmentation_depends_on_seed_epoch_and_index_only(train_split):
    dataset = WSOLDataset(train_split, train=True, image_size=SIZE, resize=RESIZE, seed=3)
    first = [dataset[i][0] for i in range(len(dataset))]
    assert all(torch.equal(dataset[i][0], first[i]) for i in reversed(range(len(dataset))))
    dataset.set_epoch(1)
    assert sum(not torch.equal(dataset[i][0], first[i]) for i in range(len(dataset))) >= len(dataset) // 2
    dataset.set_epoch(0)
    assert torch.equal(dataset[5][0], first[5])
    other_seed = WSOLDataset(train_split, train=True, image_size=SIZE, resize=RESIZE, seed=4)
    assert sum(not torch.equal(other_seed[i][0], first[i]) for i in range(len(dataset))) >= len(dataset) // 2


def test_eval_mode_is_deterministic(test_split):
    dataset = WSOLDataset(test_split, train=False, image_size=SIZE, resize=RESIZE)
    dataset.set_epoch(5)
    again = WSOLDataset(test_split, train=False, image_size=SIZE, resize=RESIZE)
    assert all(torch.equal(dataset[i][0], again[i][0]) for i in range(len(dataset)))


@pytest.mark.parametrize("protocol", ["bas", "wsolevaluation"])
def test_eval_boxes_follow_the_protocol(test_split, protocol):
    dataset = WSOLDataset(test_split, train=False, image_size=SIZE, resize=RESIZE, eval_protocol=protocol)
    for index in range(len(dataset)):
        width, height = test_split.sizes[index]
        original = test_split.boxes[index]
        if protocol == "bas":
            expected = bas_boxes(original, width, height, RESIZE, SIZE)
        else:
            expected = resize_boxes(original, width, height, SIZE)
        got = dataset.eval_boxes(index)
        assert got.dtype == np.float32 and got.shape == (1, 4)
        np.testing.assert_array_equal(got, expected)
        assert (got >= 0).all() and (got <= SIZE).all()


def test_unknown_eval_protocol_is_refused(test_split):
    with pytest.raises(ValueError, match="eval_protocol"):
        WSOLDataset(test_split, train=False, eval_protocol="pascal")


def test_loader_order_is_a_function_of_seed_and_epoch(train_split):
    dataset = WSOLDataset(train_split, train=False, image_size=SIZE, resize=RESIZE)

    def order(seed, epoch, shuffle=True):
        return loader_items(build_loader(dataset, 5, shuffle=shuffle, seed=seed, epoch=epoch))[2].tolist()

    first = order(0, 0)
    assert sorted(first) == list(range(len(dataset)))
    assert order(0, 0) == first
    assert order(0, 1) != first
    assert order(1, 0) != first
    assert order(0, 0, shuffle=False) == list(range(len(dataset)))


def test_loader_batches_keep_labels_with_indices_and_set_the_epoch(train_split):
    dataset = WSOLDataset(train_split, train=True, image_size=SIZE, resize=RESIZE, seed=1)
    loader = build_loader(dataset, 5, shuffle=True, seed=2, epoch=3, drop_last=True)
    assert dataset.epoch == 3
    batches = list(loader)
    assert len(batches) == len(dataset) // 5
    for images, labels, indices in batches:
        assert images.shape == (5, 3, SIZE, SIZE) and labels.dtype == torch.int64
        np.testing.assert_array_equal(labels.numpy(), train_split.labels[indices.numpy()])
        for image, index in zip(images, indices.tolist()):
            assert torch.equal(image, normalize_pixels(dataset[index][0]))


def test_worker_count_does_not_change_batches(train_split):
    dataset = WSOLDataset(train_split, train=True, image_size=SIZE, resize=RESIZE, seed=0)
    single = loader_items(build_loader(dataset, 4, shuffle=True, num_workers=0, seed=5, epoch=2))
    parallel = loader_items(build_loader(dataset, 4, shuffle=True, num_workers=2, seed=5, epoch=2))
    for a, b in zip(single, parallel):
        assert torch.equal(a, b)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing"])
def test_unreadable_image_names_path_and_index(tmp_path, train_split, damage):
    bad = tmp_path / "broken.jpg"
    if damage == "truncated":
        data = train_split.image_paths[1].read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    paths = list(train_split.image_paths)
    paths[2] = bad
    broken = replace(train_split, image_paths=paths)
    for train in (True, False):
        dataset = WSOLDataset(broken, train=train, image_size=SIZE, resize=RESIZE)
        dataset[1]  # neighbours still load
        with pytest.raises(ImageReadError, match=r"broken\.jpg \(dataset index 2\)"):
            dataset[2]


def test_split_record_validates_lengths_and_labels(train_split):
    with pytest.raises(ValueError, match="labels"):
        replace(train_split, labels=train_split.labels[:-1])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        replace(train_split, labels=train_split.labels + 1)


def test_load_split_synthetic_generates_then_reuses(tmp_path, tiny_synthetic_spec):
    root = tmp_path / "synthetic"
    small = replace(tiny_synthetic_spec, num_classes=2, train_per_class=2, test_per_class=1, seed=9)
    train = load_split("synthetic", root, "train", small)
    assert isinstance(train, WSOLSplit) and len(train) == 4 and (root / MARKER_NAME).is_file()
    assert len(load_split("synthetic", root, "test")) == 2  # no spec: reads what is there
    with pytest.raises(ValueError, match="different spec"):
        load_split("synthetic", root, "test", replace(small, seed=10))


def test_load_split_cub_and_errors(tmp_path, tiny_synthetic_root):
    assert len(load_split("cub", tiny_synthetic_root, "test")) == len(read_cub(tiny_synthetic_root, "test"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_split("cub", tmp_path / "nowhere", "train")
    with pytest.raises(ValueError, match="synthetic, cub, imagenet"):
        load_split("voc", tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="class order"):
        load_split("imagenet", tmp_path, "test")
    with pytest.raises(ValueError, match="split must be one of"):
        load_split("synthetic", tmp_path / "unused", "val")
    assert not (tmp_path / "unused").exists()
    with pytest.raises(ValueError, match="metadata folder"):
        load_split("wsolevaluation", tmp_path, "train")
    assert DATASETS == ("synthetic", "cub", "imagenet", "wsolevaluation")


@pytest.mark.parametrize("device, pinned", [("cpu", False), ("cuda", True), ("cuda:1", True)])
def test_torch_loader_pins_batches_for_a_gpu(train_split, device, pinned, monkeypatch):
    dataset = WSOLDataset(train_split, train=False, image_size=32, resize=37)
    loader = make_loader(dataset, 4, loader="torch", workers=0, device=device)
    assert loader.pixels_to_device is pinned
    seen = {}

    class Recording:  # the DataLoader's options, without loading
        def __init__(self, *args, **options):
            seen.update(options)

        def __iter__(self):
            return iter(())

    monkeypatch.setattr(datasets, "DataLoader", Recording)
    assert list(loader) == [] and seen["pin_memory"] is pinned


@pytest.mark.parametrize("device", DEVICES)
def test_pixels_travel_to_the_device_and_are_normalized_there(train_split, device, monkeypatch):
    """For a GPU the torch loader moves uint8 batches (pinned, non-blocking) and normalizes them
    on the device: the same values as batches the workers normalize. On the CPU the mode is forced
    (a CUDA device sets it), so the path runs here too."""
    dataset = WSOLDataset(train_split, train=True, image_size=SIZE, resize=RESIZE, seed=1)
    options = dict(loader="torch", shuffle=True, workers=1, skip_bad_images=True)
    expected = list(make_loader(dataset, 4, **options))
    moved = make_loader(dataset, 4, device=device, **options)
    assert moved.pixels_to_device == (device == "cuda")
    moved.pixels_to_device = True
    normalized = []
    monkeypatch.setattr(datasets, "normalize_pixels",
                        lambda pixels: normalized.append((pixels.dtype, pixels.device.type)) or normalize_pixels(pixels))
    batches = list(moved)
    assert len(batches) == len(expected) > 1
    assert normalized == [(torch.uint8, device)] * len(batches)  # in this process, after the copy
    for (images, labels, indices), (want, want_labels, want_indices) in zip(batches, expected):
        assert images.device.type == device and images.dtype == torch.float32
        assert torch.equal(images.cpu(), want) if device == "cpu" else torch.allclose(images.cpu(), want, atol=1e-6)
        assert torch.equal(labels, want_labels) and torch.equal(indices, want_indices)
