"""ImageNet-scale host side: start-up time and memory of the training split, on a fabricated
``train/<wnid>/<file>`` tree of two-byte files (1,000 classes x 1,281 files by default, ~1.28 M).

Each measurement runs in a fresh interpreter (``python -c``), as a training process would start:
  listing    ``read_imagenet(root, "train")`` with no cached listing (folders listed, cache written)
  cached     the same with the cache in place (the start-up of every later run and process)
  split MB   what the split's columns hold (paths, labels, sizes, boxes), and the resident-set
             growth of the process while reading it
  worker MB  private memory a forked DataLoader-style child dirties while reading every path of
             the split (copy-on-write: near zero when no Python object per sample is touched)
  loader     constructing a loader (rank 0 of 8); for a split read from a listing it does not stat
             every file (see ``WSOLSplit.files_listed``)
  dali build ``DaliLoader.build`` (not running) over ``--dali-files`` of rank 0's epoch order, one
             rank's share of ImageNet on 8 GPUs, as every epoch does: path strings, the epoch's
             augmentation arrays, the graph (when DALI imports)
Goals (the pipeline issue): start-up under 10 s from the cache, under 100 MB per process for the
split, flat memory across workers, a DALI pipeline per epoch in under 2 s.

    python benchmarks/split_scale.py --out runs/bench/split_scale.json
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MEASURE = r'''
import json, os, sys, time
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
def private_dirty():
    for line in open("/proc/self/smaps_rollup"):
        if line.startswith("Private_Dirty:"):
            return int(line.split()[1]) * 1024
    return 0
from wsol_fast.data import read_imagenet
before = rss()
start = time.perf_counter()
split = read_imagenet(sys.argv[1], "train")
seconds = time.perf_counter() - start
grown = rss() - before
columns = split.image_paths.nbytes + split.labels.nbytes + split.sizes.nbytes + split.boxes.nbytes
read, write = os.pipe()
child = os.fork()
if child == 0:  # a DataLoader worker: reads every sample's path
    os.close(read)
    dirty = private_dirty()
    total = sum(len(str(split.image_paths[i])) for i in range(len(split)))
    os.write(write, json.dumps([private_dirty() - dirty, total]).encode())
    os._exit(0)
os.close(write)
worker_dirty, _ = json.loads(os.read(read, 1 << 16))
os.waitpid(child, 0)
result = {"images": len(split), "seconds": seconds, "rss_growth_mb": grown / 2**20,
          "columns_mb": columns / 2**20, "worker_private_dirty_mb": worker_dirty / 2**20}
dali_files = int(sys.argv[2])
from wsol_fast.data import WSOLDataset
from wsol_fast.data.dali_loader import DaliLoader
from wsol_fast.data.dali_pipelines import dali_import_error
dataset = WSOLDataset(split, train=True)
start = time.perf_counter()
loader = DaliLoader(dataset, 32, workers=2, shuffle=True, num_shards=8)
result["loader_start_seconds"] = time.perf_counter() - start
if dali_files and dali_import_error() is None:  # one epoch's pipeline: paths, parameters, graph
    loader.set_epoch(0)
    samples = loader.epoch_indices()[:dali_files]
    start = time.perf_counter()
    loader.build(samples)
    result["dali_build_seconds"] = time.perf_counter() - start
    result["dali_files"] = len(samples)
print(json.dumps(result))
'''


def fabricate(root: Path, classes: int, per_class: int) -> float:
    """Create the tree of two-byte files (a JPEG start marker: the loaders refuse empty files)
    unless it is complete -> seconds spent."""
    marker = root / f".complete_v2_{classes}x{per_class}"
    if marker.exists():
        return 0.0
    start = time.perf_counter()
    for c in range(classes):
        folder = root / "train" / f"n{c:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            handle = os.open(folder / f"n{c:08d}_{i}.JPEG", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
            os.write(handle, b"\xff\xd8")
            os.close(handle)
    marker.touch()
    return time.perf_counter() - start


def measure(root: Path, dali_files: int) -> dict:
    output = subprocess.run([sys.executable, "-c", MEASURE, str(root), str(dali_files)], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--per-class", type=int, default=1281)
    parser.add_argument("--root", type=Path, help="default /tmp/wsol_split_scale_<classes>x<per class>")
    parser.add_argument("--dali-files", type=int, default=160_000, help="files of the DALI build (0: skip)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    root = args.root or Path(f"/tmp/wsol_split_scale_{args.classes}x{args.per_class}")
    made = fabricate(root, args.classes, args.per_class)
    for cache in (root / ".wsol_fast").glob("*.npz"):
        cache.unlink()
    listing = measure(root, 0)
    cached = measure(root, args.dali_files)
    report = {"benchmark": "split_scale", "classes": args.classes, "per_class": args.per_class,
              "fabricate_seconds": made, "listing": listing, "cached": cached, "cpu_count": os.cpu_count()}
    lines = [f"{cached['images']} files ({args.classes} classes x {args.per_class}), fresh interpreter each:",
             f"  listing, no cache:   {listing['seconds']:.2f} s",
             f"  from the cache:      {cached['seconds']:.2f} s   (goal < 10 s)",
             f"  split columns:       {cached['columns_mb']:.1f} MB, process grew {cached['rss_growth_mb']:.1f} MB "
             f"(goal < 100 MB)",
             f"  forked worker:       {cached['worker_private_dirty_mb']:.1f} MB private after reading every path",
             f"  loader start-up:     {cached['loader_start_seconds']:.2f} s"]
    if "dali_build_seconds" in cached:
        lines.append(f"  DALI pipeline build: {cached['dali_build_seconds']:.2f} s over {cached['dali_files']} files "
                     "(goal < 2 s)")
    print("\n".join(lines), flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
