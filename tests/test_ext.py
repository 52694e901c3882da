"""The C++/CUDA evaluation extension against NumPy/SciPy and the PyTorch reference.

Boxes are checked against ``scipy.ndimage.label`` (8-connectivity) with the tie rule made
explicit; percentiles against ``numpy.percentile``. CUDA tests compare the GPU ops with the CPU
ops and run only where a GPU and a CUDA build are present; without a GPU, the CUDA kernels'
block algorithms (csrc/block_algorithms.cuh) run in a sequential emulation compiled with the
host compiler and are compared with the CPU ops.
"""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from wsol_fast.ops import eval_reference as reference
from wsol_fast.ops import ext

pytestmark = pytest.mark.skipif(not ext.available(), reason="wsol_fast._C is not built")
# On a GPU host the CUDA tests run and fail without a CUDA build (`make setup` rebuilds for the GPU).
needs_cuda = pytest.mark.gpu


@needs_cuda
def test_a_gpu_host_has_the_cuda_build():
    assert ext.has_cuda(), "wsol_fast._C was built without CUDA on a machine with a GPU: run `make setup`"

EIGHT_CONNECTED = np.ones((3, 3), dtype=int)
CSRC = Path(__file__).resolve().parents[1] / "csrc"


# ---- map makers (fresh random values every run) ----

def noise_maps(batch, height, width, dtype=torch.float32):
    return torch.rand(batch, height, width, dtype=torch.float64).to(dtype)


def smooth_maps(batch, height, width, dtype=torch.float32, sigma=3.0):
    """Blob-like maps in [0, 1]: Gaussian-smoothed noise, min-max scaled."""
    noise = np.random.default_rng(int(torch.randint(1 << 30, ()))).random((batch, height, width))
    smooth = ndimage.gaussian_filter(noise, sigma=(0, sigma, sigma), mode="reflect")
    low = smooth.min(axis=(1, 2), keepdims=True)
    span = np.maximum(smooth.max(axis=(1, 2), keepdims=True) - low, 1e-12)
    return torch.from_numpy((smooth - low) / span).to(dtype)


def quantized_maps(batch, height, width, levels=8, dtype=torch.float32):
    """Values k / levels: many ties, some exactly on thresholds."""
    return (torch.randint(0, levels + 1, (batch, height, width)).double() / levels).to(dtype)


def thresholds(count):
    return (torch.arange(count, dtype=torch.float64) / count).tolist()


# ---- NumPy/SciPy references ----

def numpy_percentile_normalize(maps: torch.Tensor, p: float) -> np.ndarray:
    compute = np.float64 if maps.dtype == torch.float64 else np.float32
    values = maps.to(torch.float64 if compute is np.float64 else torch.float32).numpy()
    out = np.empty(values.shape, dtype=np.float32)
    for i, m in enumerate(values):
        level = np.percentile(m, p)
        if level > 0:
            out[i] = np.clip(m / level, 0, 1)
        else:
            out[i] = (m > 0).astype(np.float32)
    return out


def scipy_components(mask: np.ndarray):
    """-> list of (size, first raster index, (x0, y0, x1, y1) exclusive) of every component."""
    labels, count = ndimage.label(mask, structure=EIGHT_CONNECTED)
    if count == 0:
        return []
    flat = labels.ravel()
    sizes = np.bincount(flat, minlength=count + 1)
    firsts = np.full(count + 1, flat.size)
    np.minimum.at(firsts, flat, np.arange(flat.size))
    found = []
    for label, (rows, cols) in enumerate(ndimage.find_objects(labels), start=1):
        found.append((int(sizes[label]), int(firsts[label]),
                      (cols.start, rows.start, cols.stop, rows.stop)))
    return found


def masks_of(maps: torch.Tensor, levels):
    """maps > t compared in the maps' dtype, as NumPy bool arrays (t, b)."""
    return [[(m > torch.tensor(t, dtype=torch.float64).to(maps.dtype)).numpy() for m in maps]
            for t in levels]


def scipy_largest_boxes(maps: torch.Tensor, levels, empty="full") -> np.ndarray:
    batch, height, width = maps.shape
    empty_box = (0, 0, width, height) if empty == "full" else (0, 0, 0, 0)
    out = np.empty((batch, len(levels), 4), dtype=np.int64)
    for j, masks in enumerate(masks_of(maps, levels)):
        for b, mask in enumerate(masks):
            components = scipy_components(mask)
            if not components:
                out[b, j] = empty_box
                continue
            size, first, box = max(components, key=lambda c: (c[0], -c[1]))
            out[b, j] = box
    return out


def numpy_iou(box, truth) -> float:
    x0, y0 = max(box[0], truth[0]), max(box[1], truth[1])
    x1, y1 = min(box[2], truth[2]), min(box[3], truth[3])
    inter = max(0.0, x1 - x0 + 1.0) * max(0.0, y1 - y0 + 1.0)
    area = lambda b: (b[2] - b[0] + 1.0) * (b[3] - b[1] + 1.0)
    union = area(box) + area(truth) - inter
    return inter / union if union > 0 else 0.0


def best_numpy_iou(boxes, truths) -> float:
    return max((numpy_iou(b, t) for b in boxes for t in truths), default=0.0)


def random_truth(batch, height, width, most=3):
    """(B, K, 4) float64 boxes inside the map and (B,) counts in [0, K]."""
    corners = torch.rand(batch, most, 2, 2, dtype=torch.float64)
    corners[..., 0] *= width
    corners[..., 1] *= height
    low = corners.amin(dim=2).floor()
    high = corners.amax(dim=2).ceil()
    boxes = torch.cat([low, high], dim=2)
    counts = torch.randint(0, most + 1, (batch,))
    counts[0] = most
    return boxes, counts


# ---- percentile-max normalization ----

@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("shape", [(3, 1, 1), (2, 1, 17), (2, 19, 1), (4, 13, 7), (2, 224, 224)])
def test_percentile_normalize_matches_reference_and_numpy(dtype, shape):
    maps = smooth_maps(*shape, dtype=dtype) if shape[1] * shape[2] > 50 else noise_maps(*shape, dtype)
    for p in (0.0, 37.5, 90.0, 99.0, 100.0):
        got = ext.percentile_max_normalize(maps, p)
        assert got.dtype == torch.float32 and got.shape == maps.shape
        assert torch.equal(got, reference.percentile_max_normalize(maps, p)), p
        np.testing.assert_allclose(got.numpy(), numpy_percentile_normalize(maps, p), rtol=1e-6, atol=0)


def test_percentile_normalize_ties_constant_zero_and_noncontiguous():
    tied = quantized_maps(5, 23, 31)
    tied[1] = 0.0  # all zero -> zeros
    tied[2] = 0.375  # constant -> ones
    tied[3, :, :25] = 0.0  # percentile 0 with a positive tail -> 1 on the tail
    for p in (50.0, 90.0, 99.0):
        got = ext.percentile_max_normalize(tied, p)
        np.testing.assert_array_equal(got.numpy(), numpy_percentile_normalize(tied, p))
        assert torch.equal(got, reference.percentile_max_normalize(tied, p))
    assert not got[1].any() and bool((got[2] == 1).all())
    transposed = smooth_maps(3, 31, 17).transpose(1, 2)
    assert not transposed.is_contiguous()
    assert torch.equal(ext.percentile_max_normalize(transposed, 97.0),
                       reference.percentile_max_normalize(transposed.contiguous(), 97.0))


def test_percentile_normalize_when_the_sample_misleads():
    """Maps large enough for the sampled bracket: ties, and a map whose strided sample (every
    fifth value here) sees only zeros, so the bracket misses and the radix rounds answer."""
    tied = quantized_maps(2, 64, 80, levels=6)
    periodic = 1.0 + torch.rand(2, 64 * 80)
    periodic[:, ::5] = 0.0
    maps = torch.cat([tied, periodic.view(2, 64, 80), smooth_maps(2, 64, 80)])
    for p in (0.0, 10.0, 50.0, 90.0, 99.0, 99.9):
        got = ext.percentile_max_normalize(maps, p)
        np.testing.assert_array_equal(got.numpy(), numpy_percentile_normalize(maps, p))
        assert torch.equal(got, reference.percentile_max_normalize(maps, p)), p


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_percentile_normalize_rejects_non_finite_naming_the_map(bad):
    maps = noise_maps(4, 9, 11)
    maps[2, 3, 4] = bad
    with pytest.raises(ValueError, match="map 2 "):
        ext.percentile_max_normalize(maps, 99.0)


def test_percentile_normalize_rejects_bad_arguments():
    with pytest.raises(ValueError, match="maps"):
        ext.percentile_max_normalize(torch.rand(3, 4), 99.0)
    with pytest.raises(ValueError, match="maps"):
        ext.percentile_max_normalize(torch.ones(2, 3, 4, dtype=torch.int64), 99.0)
    with pytest.raises(ValueError, match="p="):
        ext.percentile_max_normalize(torch.rand(2, 3, 4), 101.0)


# ---- largest-component boxes ----

@pytest.mark.parametrize("shape", [(2, 1, 1), (3, 1, 23), (3, 17, 1), (4, 9, 14), (3, 31, 27)])
@pytest.mark.parametrize("maker", [noise_maps, smooth_maps, quantized_maps])
def test_boxes_match_scipy_at_100_thresholds(shape, maker):
    maps = maker(*shape)
    levels = thresholds(100)
    for empty in ("full", "zero"):
        got = ext.largest_component_boxes(maps, levels, empty=empty)
        assert got.dtype == torch.int64 and got.shape == (shape[0], 100, 4)
        np.testing.assert_array_equal(got.numpy(), scipy_largest_boxes(maps, levels, empty))


def test_boxes_match_scipy_at_1000_thresholds():
    maps = torch.cat([smooth_maps(2, 21, 26, sigma=2.0), quantized_maps(1, 21, 26, levels=40)])
    levels = thresholds(1000)
    np.testing.assert_array_equal(ext.largest_component_boxes(maps, levels).numpy(),
                                  scipy_largest_boxes(maps, levels))


def test_boxes_match_reference():
    maps = torch.cat([smooth_maps(3, 40, 33), noise_maps(1, 40, 33), quantized_maps(1, 40, 33)])
    levels = thresholds(100)
    for empty in ("full", "zero"):
        assert torch.equal(ext.largest_component_boxes(maps, levels, empty),
                           reference.largest_component_boxes(maps, levels, empty))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_boxes_in_other_dtypes_compare_in_that_dtype(dtype):
    maps = smooth_maps(3, 19, 24, dtype=dtype)
    levels = thresholds(100)
    got = ext.largest_component_boxes(maps, levels)
    np.testing.assert_array_equal(got.numpy(), scipy_largest_boxes(maps, levels))
    assert torch.equal(got, reference.largest_component_boxes(maps, levels))


def test_boxes_of_noncontiguous_maps_and_unsorted_thresholds():
    maps = smooth_maps(3, 26, 19).transpose(1, 2)
    levels = torch.rand(57, dtype=torch.float64).tolist() + [0.5, 0.5, 0.0, 1.0]
    got = ext.largest_component_boxes(maps, levels)
    np.testing.assert_array_equal(got.numpy(), scipy_largest_boxes(maps, levels))


def test_boxes_at_thresholds_sharing_grid_cells_and_values_beyond_them():
    """Repeated thresholds, a cluster far finer than the span / 2T grid and a lone threshold
    take the table's exact fallbacks; values lie below and above every threshold."""
    maps = torch.cat([noise_maps(2, 13, 17) * 3.0 - 1.0, quantized_maps(1, 13, 17, levels=4)])
    clustered = [0.0, 1e-7, 2e-7, 3e-7, 0.25, 0.25, 0.25, 0.5, 0.999999, 1.0]
    for levels in (clustered, [0.5], [0.25] * 5):
        np.testing.assert_array_equal(ext.largest_component_boxes(maps, levels).numpy(),
                                      scipy_largest_boxes(maps, levels))


def test_boxes_at_more_thresholds_than_16_bit_buckets_hold():
    maps = torch.cat([smooth_maps(1, 9, 12), noise_maps(1, 9, 12)])
    levels = thresholds(40000)
    got = ext.largest_component_boxes(maps, levels)
    assert torch.equal(got, reference.largest_component_boxes(maps, levels))
    np.testing.assert_array_equal(got[:, ::97].numpy(), scipy_largest_boxes(maps, levels[::97]))


def test_boxes_of_constant_zero_and_known_blob():
    maps = torch.zeros(3, 8, 10)
    maps[1] = 0.5
    maps[2, 2:5, 3:7] = 0.9  # rows 2-4, columns 3-6
    got = ext.largest_component_boxes(maps, [0.0, 0.5, 0.95], empty="full")
    assert got[0].tolist() == [[0, 0, 10, 8]] * 3
    assert got[1].tolist() == [[0, 0, 10, 8], [0, 0, 10, 8], [0, 0, 10, 8]]
    assert got[2].tolist() == [[3, 2, 7, 5], [3, 2, 7, 5], [0, 0, 10, 8]]
    assert ext.largest_component_boxes(maps, [0.5], empty="zero")[1].tolist() == [[0, 0, 0, 0]]


def test_boxes_tie_goes_to_first_component_in_raster_order():
    maps = torch.zeros(1, 7, 9)
    maps[0, 0:2, 0:2] = 0.6  # 4 pixels, first at raster 0, appear at a lower threshold
    maps[0, 4:6, 6:8] = 0.7  # 4 pixels, first at raster 42
    maps[0, 3, 4] = 0.9  # 1 pixel
    got = ext.largest_component_boxes(maps, [0.8, 0.65, 0.5])[0].tolist()
    assert got == [[4, 3, 5, 4], [6, 4, 8, 6], [0, 0, 2, 2]]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_boxes_reject_non_finite_maps_naming_the_map(bad):
    maps = noise_maps(3, 6, 7)
    maps[1, 0, 0] = bad
    with pytest.raises(ValueError, match="map 1 "):
        ext.largest_component_boxes(maps, [0.5])


def test_boxes_reject_bad_arguments():
    maps = noise_maps(2, 5, 5)
    with pytest.raises(ValueError, match="thresholds"):
        ext.largest_component_boxes(maps, [])
    with pytest.raises(ValueError, match="thresholds"):
        ext.largest_component_boxes(maps, [0.1, float("nan")])
    with pytest.raises(ValueError, match="empty"):
        ext.largest_component_boxes(maps, [0.1], empty="none")
    with pytest.raises(ValueError, match="maps"):
        ext.largest_component_boxes(torch.rand(2, 0, 4), [0.1])
    with pytest.raises(ValueError, match="too large"):  # wider than a 16-bit box coordinate
        ext.largest_component_boxes(torch.rand(1, 2, 32768), [0.1])


# ---- IoU: all components (MaxBoxAccV2) and largest boxes (MaxBoxAcc) ----

@pytest.mark.parametrize("maker", [noise_maps, smooth_maps, quantized_maps])
def test_best_iou_over_all_components_matches_scipy(maker):
    maps = maker(4, 23, 29)
    levels = thresholds(100)
    truth, counts = random_truth(4, 23, 29)
    for empty in ("full", "zero"):
        boxes, best = ext.largest_component_boxes_and_best_iou(maps, levels, truth, counts, empty)
        assert torch.equal(boxes, ext.largest_component_boxes(maps, levels, empty))
        assert best.dtype == torch.float64 and best.shape == (4, 100)
        empty_box = (0, 0, 29, 23) if empty == "full" else (0, 0, 0, 0)
        for j, masks in enumerate(masks_of(maps, levels)):
            for b, mask in enumerate(masks):
                component_boxes = [c[2] for c in scipy_components(mask)] or [empty_box]
                expected = best_numpy_iou(component_boxes, truth[b, :counts[b]].tolist())
                assert best[b, j].item() == expected, (b, j)


def test_best_iou_at_1000_thresholds_bounds_the_largest_box_iou():
    maps = smooth_maps(2, 30, 30)
    truth, counts = random_truth(2, 30, 30)
    boxes, best = ext.largest_component_boxes_and_best_iou(maps, thresholds(1000), truth, counts)
    largest = torch.tensor([[best_numpy_iou([box], truth[b, :counts[b]].tolist()) for box in boxes[b].tolist()]
                            for b in range(2)], dtype=torch.float64)
    assert bool((best >= largest).all())
    for b in range(2):
        j = 700
        mask = (maps[b] > torch.tensor(0.7, dtype=torch.float64).float()).numpy()
        component_boxes = [c[2] for c in scipy_components(mask)] or [(0, 0, 30, 30)]
        assert best[b, j].item() == best_numpy_iou(component_boxes, truth[b, :counts[b]].tolist())


def test_iou_ops_reject_bad_ground_truth():
    maps = noise_maps(2, 5, 5)
    with pytest.raises(ValueError, match="gt_boxes"):
        ext.largest_component_boxes_and_best_iou(maps, [0.5], torch.zeros(3, 1, 4))
    with pytest.raises(ValueError, match="gt_counts"):
        ext.largest_component_boxes_and_best_iou(maps, [0.5], torch.zeros(2, 1, 4), [0, 2])


# ---- CUDA against the CPU ----

@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_cuda_percentile_normalize_equals_cpu(dtype):
    for shape in [(3, 1, 1), (2, 1, 37), (5, 13, 7), (4, 224, 224)]:
        maps = torch.cat([smooth_maps(*shape, dtype=dtype), quantized_maps(2, *shape[1:], dtype=dtype)])
        maps[1] = 0.0
        for p in (0.0, 50.0, 90.0, 99.0, 100.0):
            expected = ext.percentile_max_normalize(maps, p)
            assert torch.equal(ext.percentile_max_normalize(maps.cuda(), p).cpu(), expected), (shape, p)
    maps = noise_maps(3, 8, 8).cuda()
    maps[2, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="map 2 "):
        ext.percentile_max_normalize(maps, 99.0)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_cuda_boxes_and_best_iou_equal_cpu(dtype):
    for shape, count in [((2, 1, 1), 100), ((3, 1, 29), 100), ((3, 33, 1), 100),
                         ((4, 37, 41), 100), ((3, 224, 224), 1000)]:
        maps = torch.cat([maker(*shape, dtype=dtype)
                          for maker in (noise_maps, smooth_maps, quantized_maps)])
        truth, counts = random_truth(maps.shape[0], *shape[1:])
        levels = thresholds(count)
        for empty in ("full", "zero"):
            boxes, best = ext.largest_component_boxes_and_best_iou(maps, levels, truth, counts, empty)
            got_boxes, got_best = ext.largest_component_boxes_and_best_iou(
                maps.cuda(), levels, truth, counts, empty)
            assert torch.equal(got_boxes.cpu(), boxes), (shape, empty)
            assert torch.equal(got_best.cpu(), best), (shape, empty)
            assert torch.equal(ext.largest_component_boxes(maps.cuda(), levels, empty).cpu(), boxes)
    maps = noise_maps(3, 8, 8).cuda()
    maps[1, 1, 1] = float("inf")
    with pytest.raises(ValueError, match="map 1 "):
        ext.largest_component_boxes(maps, [0.5])


# ---- The CUDA block algorithms, emulated on the CPU ----

EMULATOR_SOURCE = r"""
// Runs block::normalize_map and block::sweep_map (with IoU) of every map with the block's
// threads emulated one after another in a shuffled order per phase.
// usage: emulator IN OUT; IN: int64 B H W T K threads empty_full is_double, float64 p, maps,
// thresholds (compute dtype), float64 ground truth (B, K, 4), int64 counts (B,);
// OUT: float32 normalized maps, int64 boxes, float64 best IoU, int32 flags.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <vector>

#include "block_algorithms.cuh"

struct SequentialBlock {
  int size;
  std::mt19937 rng{12345u};
  std::vector<int> order;
  explicit SequentialBlock(int threads) : size(threads), order(threads) {
    std::iota(order.begin(), order.end(), 0);
  }
  int threads() const { return size; }
  template <class F> void each(F&& f) {
    std::shuffle(order.begin(), order.end(), rng);
    for (int thread : order) f(thread);
  }
  template <class F> void leader(F&& f) { f(); }
  void barrier() {}
};

template <typename V> std::vector<V> take(FILE* in, long long n) {
  std::vector<V> values(n);
  if (n > 0 && std::fread(values.data(), sizeof(V), n, in) != static_cast<size_t>(n)) std::exit(3);
  return values;
}

template <typename V> void put(FILE* out, const std::vector<V>& values) {
  std::fwrite(values.data(), sizeof(V), values.size(), out);
}

template <typename T>
void run(FILE* in, FILE* out, const std::vector<long long>& header, double p) {
  const long long batch = header[0], height = header[1], width = header[2];
  const long long levels = header[3], most = header[4], n = height * width;
  const auto maps = take<T>(in, batch * n);
  const auto thresholds = take<T>(in, levels);
  const auto truth = take<double>(in, batch * most * 4);
  const auto counts = take<long long>(in, batch);
  SequentialBlock ex(static_cast<int>(header[5]));
  std::vector<int> flags(batch, 0);

  std::vector<float> normalized(batch * n, -1.0f);
  wsol::block::SelectShared select{};
  const wsol::PercentilePlan plan = wsol::plan_percentile(n, p);
  for (long long map = 0; map < batch; ++map) {
    if (!wsol::block::normalize_map<T>(ex, select, maps.data() + map * n, n, plan,
                                       normalized.data() + map * n)) {
      flags[map] |= 1;
    }
  }

  std::vector<int> ints(wsol::block::SweepScratch::ints_needed(n, levels, true));
  std::vector<double> doubles(n);
  const auto scratch = wsol::block::SweepScratch::carve(ints.data(), doubles.data(), n, levels, true);
  std::vector<long long> boxes(batch * levels * 4, -7);
  std::vector<double> best(batch * levels, -1.0);
  wsol::block::SweepShared shared{};
  for (long long map = 0; map < batch; ++map) {
    const wsol::block::SweepMap<T, T> one{
        maps.data() + map * n, static_cast<int>(height), static_cast<int>(width),
        thresholds.data(), static_cast<int>(levels), header[6] != 0, truth.data() + map * most * 4,
        counts[map], boxes.data() + map * levels * 4, best.data() + map * levels};
    if (!wsol::block::sweep_map<true>(ex, shared, scratch, one)) flags[map] |= 2;
  }
  put(out, normalized);
  put(out, boxes);
  put(out, best);
  put(out, flags);
}

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  FILE* in = std::fopen(argv[1], "rb");
  FILE* out = std::fopen(argv[2], "wb");
  if (in == nullptr || out == nullptr) return 2;
  const auto header = take<long long>(in, 8);
  const double p = take<double>(in, 1)[0];
  if (header[7] != 0) run<double>(in, out, header, p);
  else run<float>(in, out, header, p);
  return std::fclose(out) == 0 ? 0 : 4;
}
"""


@pytest.fixture(scope="module")
def block_emulator(tmp_path_factory):
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler to build the block-algorithm emulator")
    folder = tmp_path_factory.mktemp("block_emulator")
    (folder / "driver.cpp").write_text(EMULATOR_SOURCE)
    subprocess.run([compiler, "-O1", "-std=c++20", "-Wall", "-Werror", f"-I{CSRC}",
                    str(folder / "driver.cpp"), "-o", str(folder / "emulator")], check=True)
    return folder


def emulate_block_algorithms(folder, maps, levels, truth, counts, threads, empty_full, p):
    """Runs normalize_map and sweep_map (with IoU) of every map; -> normalized (B, H, W),
    boxes (B, T, 4), best IoU (B, T), flags (B,) (1: normalize saw NaN/Inf, 2: sweep did)."""
    batch, height, width = maps.shape
    compute = np.float64 if maps.dtype == torch.float64 else np.float32
    header = [batch, height, width, len(levels), truth.shape[1], threads, int(empty_full),
              int(compute is np.float64)]
    with open(folder / "in.bin", "wb") as stream:
        np.array(header, dtype=np.int64).tofile(stream)
        np.array([p], dtype=np.float64).tofile(stream)
        maps.numpy().astype(compute).tofile(stream)
        np.asarray(levels, dtype=compute).tofile(stream)
        truth.numpy().astype(np.float64).tofile(stream)
        counts.numpy().astype(np.int64).tofile(stream)
    subprocess.run([str(folder / "emulator"), str(folder / "in.bin"), str(folder / "out.bin")],
                   check=True)
    raw, offset, out = (folder / "out.bin").read_bytes(), 0, []
    for dtype, shape in [(np.float32, (batch, height, width)), (np.int64, (batch, len(levels), 4)),
                         (np.float64, (batch, len(levels))), (np.int32, (batch,))]:
        part = np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape)), offset=offset)
        offset += part.nbytes
        out.append(part.reshape(shape))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("maker", [noise_maps, smooth_maps, quantized_maps])
def test_emulated_block_algorithms_equal_cpu(block_emulator, dtype, maker):
    for shape, count in [((2, 1, 1), 100), ((2, 1, 23), 100), ((2, 17, 1), 100),
                         ((3, 19, 24), 1000), ((2, 48, 40), 100)]:
        maps = maker(*shape, dtype=dtype)
        maps[-1] = 0.0
        levels = torch.tensor(thresholds(count), dtype=torch.float64).to(dtype).tolist()
        truth, counts = random_truth(*shape)
        for threads, empty_full, p in [(1, True, 99.0), (7, False, 37.5), (64, True, 100.0)]:
            normalized, boxes, best, flags = emulate_block_algorithms(
                block_emulator, maps, levels, truth, counts, threads, empty_full, p)
            empty = "full" if empty_full else "zero"
            expected_boxes, expected_best = ext.largest_component_boxes_and_best_iou(
                maps, levels, truth, counts, empty)
            np.testing.assert_array_equal(normalized, ext.percentile_max_normalize(maps, p).numpy())
            np.testing.assert_array_equal(boxes, expected_boxes.numpy())
            np.testing.assert_array_equal(best, expected_best.numpy())
            assert not flags.any()


def test_emulated_block_algorithms_flag_non_finite_maps(block_emulator):
    maps = noise_maps(3, 5, 6)
    maps[1, 2, 2] = float("nan")
    maps[2, 0, 0] = float("inf")
    truth, counts = random_truth(3, 5, 6)
    flags = emulate_block_algorithms(block_emulator, maps, [0.5], truth, counts, 4, True, 99.0)[3]
    assert flags.tolist() == [0, 3, 3]


def test_evaluation_dispatch_uses_the_extension_by_default(monkeypatch):
    """Unset or ``ext``: the public evaluation ops run the extension; ``reference`` forces the
    reference; both give identical results."""
    from wsol_fast.ops import eval_reference, evaluation

    maps = torch.rand(3, 17, 23)
    calls = []
    for name in ("largest_component_boxes", "percentile_max_normalize"):
        original = getattr(ext, name)
        monkeypatch.setattr(ext, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    for forced, expected_calls in (("", 2), ("ext", 2), ("reference", 0)):
        monkeypatch.setenv("WSOL_FAST_OPS", forced)
        calls.clear()
        boxes = evaluation.largest_component_boxes(maps, [0.2, 0.6])
        normalized = evaluation.normalize(maps, "percentile:95")
        assert len(calls) == expected_calls, forced
        assert torch.equal(boxes, eval_reference.largest_component_boxes(maps, [0.2, 0.6]))
        torch.testing.assert_close(normalized, eval_reference.percentile_max_normalize(maps, 95), rtol=0, atol=0)


def test_threshold_sweep_through_the_extension_equals_the_reference(monkeypatch):
    """metrics.threshold_sweep_ious: one extension pass == the per-threshold reference, with
    several (and padded, out-of-order) ground-truth boxes per image."""
    from wsol_fast import metrics

    generator = torch.Generator().manual_seed(11)
    maps = torch.nn.functional.avg_pool2d(torch.rand(4, 1, 40, 36, generator=generator), 5, 1, 2)[:, 0]
    maps = (maps - maps.amin(dim=(1, 2), keepdim=True)) / (maps.amax(dim=(1, 2), keepdim=True) - maps.amin(dim=(1, 2), keepdim=True))
    gt = torch.tensor([[[2, 3, 20, 30], [0, 0, 0, 0]], [[0, 0, 0, 0], [5, 5, 35, 39]],
                       [[1, 1, 10, 12], [12, 14, 30, 33]], [[3, 2, 33, 37], [0, 0, 0, 0]]], dtype=torch.float64)
    valid = torch.tensor([[True, False], [False, True], [True, True], [True, False]])
    thresholds = metrics.default_thresholds(0.01)
    results = {}
    for backend in ("ext", "reference"):
        monkeypatch.setenv("WSOL_FAST_OPS", backend)
        results[backend] = metrics.threshold_sweep_ious(maps, gt, thresholds, valid)
    for ours, theirs in zip(results["ext"], results["reference"]):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    assert float(results["ext"][1].max()) > 0.3, "the maps overlap their boxes"
