"""Array-backed split columns (paths, boxes) against the lists they replace, and the cached
ImageNet training listing: reused while the folders are unchanged, refreshed when they change,
never trusted when tampered with."""
import time

import numpy as np
import pytest

from wsol_fast.data import WSOLSplit, read_imagenet
from wsol_fast.data import imagenet as imagenet_module
from wsol_fast.data import listing_cache
from wsol_fast.data.tables import BoxTable, PathTable


def test_path_table_equals_the_list_it_replaces():
    paths = ["/data/a/x.jpg", "/data/ü ñ/ÿ.JPEG", "/data/b/z.png", "/data/a/w.jpg"]
    table = PathTable.from_paths(paths)
    assert len(table) == 4 and table == paths and list(map(str, table)) == paths
    assert str(table[-1]) == paths[-1] and str(table[1]) == paths[1]
    assert table.take([3, 0, 3]) == [paths[3], paths[0], paths[3]]
    assert table[1:3] == paths[1:3] and table.take([]) == []
    assert table.take([-1, -4]) == [paths[3], paths[0]] and table.strings([2, -3]) == [paths[2], paths[1]]
    for bad in (4, -5):
        with pytest.raises(IndexError):
            table[bad]
        with pytest.raises(IndexError):
            table.take([0, bad])
    relative = PathTable.from_names("/data", ["a/x.jpg", "b/z.png"])
    assert relative == ["/data/a/x.jpg", "/data/b/z.png"]
    assert relative.nbytes == len("a/x.jpgb/z.png") + 3 * 8


def test_box_table_equals_the_arrays_it_replaces():
    rng = np.random.default_rng(0)
    arrays = [rng.random((k, 4), dtype=np.float32) for k in (2, 0, 1, 3, 0)]
    table = BoxTable.from_arrays(arrays)
    assert len(table) == 5
    for got, expected in zip(table, arrays):
        assert got.dtype == np.float32 and np.array_equal(got, expected)
    taken = table.take([3, 1, 0])
    assert [len(b) for b in taken] == [3, 0, 2] and np.array_equal(taken[0], arrays[3])
    assert [len(b) for b in BoxTable.empty(3)] == [0, 0, 0]


def test_subset_of_a_split_uses_the_tables():
    split = WSOLSplit("/r", ["/r/a.jpg", "/r/b.jpg", "/r/c.jpg"], [0, 1, 0],
                      [np.ones((1, 4)), np.zeros((0, 4)), np.full((2, 4), 2.0)], [[5, 6], [7, 8], [9, 10]], ["x", "y"])
    part = split.subset([2, 0])
    assert part.image_paths == ["/r/c.jpg", "/r/a.jpg"] and part.labels.tolist() == [0, 0]
    assert [b.tolist() for b in part.boxes] == [[[2.0] * 4] * 2, [[1.0] * 4]]
    assert part.sizes.tolist() == [[9, 10], [5, 6]]


def make_train_tree(root, classes=3, per_class=4):
    for c in range(classes):
        folder = root / "train" / f"n{c:08d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            (folder / f"n{c:08d}_{i}.JPEG").write_bytes(b"")
        (folder / "notes.txt").write_text("not an image")
    return root


def test_the_listing_is_cached_beside_the_data_and_reused(tmp_path, monkeypatch):
    root = make_train_tree(tmp_path / "imagenet")
    first = read_imagenet(root, "train")
    assert (root / ".wsol_fast" / listing_cache.NAME).is_file()
    assert len(first) == 12 and first.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert first.image_paths[5] == root / "train" / "n00000001" / "n00000001_1.JPEG"

    def no_listing(*args):
        raise AssertionError("the folders were listed again")
    monkeypatch.setattr(imagenet_module, "_list_train", no_listing)
    again = read_imagenet(root, "train")
    assert again.image_paths == first.image_paths and np.array_equal(again.labels, first.labels)


def test_a_changed_folder_refreshes_the_listing(tmp_path):
    root = make_train_tree(tmp_path / "imagenet")
    read_imagenet(root, "train")
    time.sleep(0.02)  # past the file system's timestamp granularity
    (root / "train" / "n00000002" / "n00000002_9.JPEG").write_bytes(b"")
    (root / "train" / "n00000000" / "n00000000_0.JPEG").unlink()
    split = read_imagenet(root, "train")
    names = [path.name for path in split.image_paths]
    assert "n00000002_9.JPEG" in names and "n00000000_0.JPEG" not in names and len(split) == 12


def test_a_read_only_data_folder_caches_in_the_user_cache(tmp_path, monkeypatch):
    root = make_train_tree(tmp_path / "imagenet")
    (root / ".wsol_fast").write_text("a file where the cache folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    read_imagenet(root, "train")
    assert list((tmp_path / "cache" / "wsol_fast").glob(f"*_{listing_cache.NAME}"))


def test_a_tampered_or_unsafe_cache_is_not_used(tmp_path):
    root = make_train_tree(tmp_path / "imagenet")
    expected = read_imagenet(root, "train").image_paths
    cache = root / ".wsol_fast" / listing_cache.NAME
    saved = dict(np.load(cache))
    np.savez(cache, **{**saved, "labels": np.zeros_like(saved["labels"]), "signature": saved["signature"] + 1})
    assert read_imagenet(root, "train").labels.tolist()[-1] == 2  # stale signature: listed again
    np.savez(cache, **{**saved, "names": np.array([object()], dtype=object)})  # would need pickle
    assert read_imagenet(root, "train").image_paths == expected
    cache.write_bytes(b"not a zip")
    assert read_imagenet(root, "train").image_paths == expected
    for damaged in (b"", cache.read_bytes()[:100]):  # empty, truncated
        cache.write_bytes(damaged)
        assert read_imagenet(root, "train").image_paths == expected
    fresh = dict(np.load(cache))  # the current signature, arrays that do not fit together
    np.savez(cache, **{**fresh, "offsets": fresh["offsets"][:-1]})
    assert read_imagenet(root, "train").image_paths == expected
    np.savez(cache, **{**fresh, "labels": fresh["labels"] + 5})
    assert read_imagenet(root, "train").labels.max() == 2


def test_split_scale_benchmark_runs_on_a_small_tree(tmp_path):
    """``benchmarks/split_scale.py`` at a test size: every figure present, the cache used."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import split_scale

    report = split_scale.main(["--classes", "4", "--per-class", "25", "--dali-files", "50",
                               "--root", str(tmp_path / "tree")])
    for run in ("listing", "cached"):
        assert report[run]["images"] == 100 and report[run]["seconds"] > 0
    assert report["cached"]["columns_mb"] < 0.1 and report["cached"]["worker_private_dirty_mb"] >= 0
    assert (tmp_path / "tree" / ".wsol_fast" / listing_cache.NAME).is_file()


def test_a_listed_split_skips_the_start_up_file_check_and_still_names_a_bad_file(tmp_path, monkeypatch):
    """ImageNet ``train/`` paths come from listing the folders: the loader does not stat them all
    at start-up (over a minute at 1.28 M files); a file emptied since fails when read, by name."""
    from wsol_fast.data import WSOLDataset, datasets, make_loader
    from wsol_fast.data.records import ImageReadError

    root = make_train_tree(tmp_path / "imagenet", classes=2, per_class=2)
    split = read_imagenet(root, "train")
    assert split.files_listed and split.subset([0, 1]).files_listed

    def no_check(*args, **kwargs):
        raise AssertionError("every file was checked at start-up")
    monkeypatch.setattr(datasets, "find_problems", no_check)
    loader = make_loader(WSOLDataset(split, train=True, image_size=16, resize=18), 2, loader="torch", workers=0)
    with pytest.raises(ImageReadError, match="n00000000_0.JPEG"):
        next(iter(loader))
