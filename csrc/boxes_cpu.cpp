// All-threshold largest-component boxes on the CPU, one pass per map.
//
// Every pixel goes to the bucket k = number of thresholds strictly below its value, so it is in
// the mask `map > t_j` exactly for j < k. Buckets are added from k = T down to 1 to a
// union-find over the 8-neighbourhood (union by size, path halving). Each pixel has one word:
// while it is outside the mask, 8 bits of which neighbours are in (set by each neighbour as it
// joins; a lookup table on them gives one find per run of active neighbours); once inside, the
// label of the component it joined. Labels are numbered densely as components are born, so the
// forest and its records (size, first raster index, box packed in 16-bit lanes so that growing
// it is one lane-wise minimum) stay small and cache-resident while pixels are visited out of
// raster order. After bucket k the largest component (ties: first raster index) is the box of
// threshold k - 1; it is found after each bucket among the previous best and the roots the
// bucket's pixels joined, off the union-find's critical path. With ground-truth boxes the pass
// also keeps a max-heap of every component's IoU (stale entries dropped lazily) for the best
// IoU over all components at every threshold (MaxBoxAccV2).
#include "eval_ops.h"

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <vector>

namespace wsol {
namespace {

// Number of thresholds strictly below a value. A grid of 2T cells over [t_0, t_last] gives
// the answer up to the one threshold a cell can hold when the thresholds are evenly spaced;
// a check falls back to a walk otherwise, so any ascending thresholds are answered exactly.
template <typename T>
class ThresholdIndex {
 public:
  ThresholdIndex(const T* thresholds, int32_t count) : count_(count) {
    // bounds_[j + 1] = t_j between -inf and +inf: the answer j has bounds_[j] < v <= bounds_[j + 1].
    bounds_.reserve(count + 2);
    bounds_.push_back(-std::numeric_limits<T>::infinity());
    bounds_.insert(bounds_.end(), thresholds, thresholds + count);
    bounds_.push_back(std::numeric_limits<T>::infinity());
    const double first = static_cast<double>(thresholds[0]);
    const double span = static_cast<double>(thresholds[count - 1]) - first;
    const int32_t cells = span > 0.0 ? 2 * count : 1;
    first_ = thresholds[0];
    scale_ = span > 0.0 ? static_cast<T>(cells / span) : T(0);
    last_cell_ = static_cast<T>(cells - 1);
    start_.resize(cells);
    for (int32_t cell = 0; cell < cells; ++cell) {
      const double edge = first + cell * (span / cells);
      start_[cell] = static_cast<int32_t>(
          std::lower_bound(thresholds, thresholds + count, edge,
                           [](T t, double e) { return static_cast<double>(t) < e; }) -
          thresholds);
    }
  }

  int32_t count_below(T value) const {
    const T scaled = (value - first_) * scale_;
    const T offset = std::min(scaled > T(0) ? scaled : T(0), last_cell_);  // NaN -> cell 0
    const T* below = bounds_.data();  // below[j] = t_{j-1}
    int32_t index = start_[static_cast<int32_t>(offset)];
    index += below[index + 1] < value;
    if ((below[index] < value) & (below[index + 1] >= value)) [[likely]] return index;
    while (index > 0 && !(below[index] < value)) --index;
    while (index < count_ && below[index + 1] < value) ++index;
    return index;
  }

 private:
  int32_t count_;
  std::vector<T> bounds_;
  T first_, scale_, last_cell_;
  std::vector<int32_t> start_;
};

// An inclusive box stored as (x0, y0, -x1, -y1) in 16-bit lanes, so that the union of two
// boxes is one lane-wise minimum. A pixel is the box (x, y, -x, -y).
struct PackedBox {
  std::array<int16_t, 4> lane;

  static PackedBox of_pixel(int32_t x, int32_t y) {
    return {{static_cast<int16_t>(x), static_cast<int16_t>(y), static_cast<int16_t>(-x),
             static_cast<int16_t>(-y)}};
  }
  int32_t x0() const { return lane[0]; }
  int32_t y0() const { return lane[1]; }
  int32_t x1() const { return -lane[2]; }
  int32_t y1() const { return -lane[3]; }
  bool operator==(const PackedBox& other) const { return lane == other.lane; }
};

inline PackedBox box_union(PackedBox a, PackedBox b) {
  PackedBox out;
  for (int i = 0; i < 4; ++i) out.lane[i] = std::min(a.lane[i], b.lane[i]);
  return out;
}

// Union-find record of a root label: component size, first raster (padded) index, box.
struct Component {
  int32_t size, first;
  PackedBox box;
};

using Pixel = PackedBox;  // the pixel's own box: its coordinates

// For each set of active neighbours (bit i: ring cell i in the order NW, N, NE, E, SE, S, SW,
// W), the ring cells that start a run of consecutive active cells. Two consecutive ring cells
// are adjacent, so each run lies in one component: one find per run.
struct RunStarts {
  std::array<uint8_t, 256> of{};
  RunStarts() {
    for (uint32_t active = 0; active < 256; ++active) {
      const uint32_t previous = ((active << 1) | (active >> 7)) & 0xFFu;
      uint32_t starts = active & ~previous;
      if (active == 0xFFu) starts = 1u;  // the whole ring is one run
      of[active] = static_cast<uint8_t>(starts);
    }
  }
};
const RunStarts kRunStarts;

// Labels are born only at pixels with no active neighbour, which are pairwise non-adjacent: at
// most ceil(H / 2) * ceil(W / 2) of them, which the low 24 bits of a cell hold (checked).
constexpr int kLabelBits = 24;
constexpr uint32_t kLabelMask = (1u << kLabelBits) - 1;

struct HeapEntry {
  double iou;
  int32_t root;
  int32_t stamp;
  bool operator<(const HeapEntry& other) const { return iou < other.iou; }
};

// Ground truth of one map for the IoU pass: `count` boxes of 4 doubles.
struct MapTruth {
  const double* boxes;
  int64_t count;
};

template <typename scalar_t, bool kWithIoU>
class ComponentSweep {
  using T = at::opmath_type<scalar_t>;

 public:
  ComponentSweep(int32_t height, int32_t width, const T* thresholds, int32_t count,
                 bool empty_full)
      : height_(height), width_(width), padded_width_(width + 2), count_(count),
        index_(thresholds, count),
        empty_box_{0, 0, empty_full ? width : 0, empty_full ? height : 0},
        cells_(static_cast<size_t>(height + 2) * (width + 2)),
        parent_(static_cast<size_t>(height) * width),
        components_(parent_.size()),
        bucket_(static_cast<size_t>(height) * width),
        bucket_begin_(count + 1),
        cursor_(count + 1),
        order_(bucket_.size()),
        joined_(bucket_.size()) {
    const int32_t w = padded_width_;
    ring_ = {-w - 1, -w, -w + 1, 1, w + 1, w, w - 1, -1};  // consecutive cells are adjacent
    if constexpr (kWithIoU) stamp_.resize(parent_.size());
  }

  // Boxes (T, 4) and, with kWithIoU, best IoU over all components (T,) of one map.
  void run(const scalar_t* map, int64_t map_index, int64_t* boxes, double* best_iou,
           MapTruth truth) {
    TORCH_CHECK_VALUE(sort_into_buckets(map), "largest_component_boxes: map ", map_index,
                      " contains NaN or Inf");
    std::fill(cells_.begin(), cells_.end(), uint32_t{0});
    // The best component so far, as the key (size, -first raster index) packed in 64 bits.
    int64_t best_key = 0;
    int32_t best_root = -1, next_label = 0;
    double empty_iou = 0.0;
    if constexpr (kWithIoU) {
      heap_.clear();
      stamp_counter_ = 0;
      empty_iou = iou_of(empty_box_, truth);
    }
    for (int32_t k = count_; k >= 1; --k) {
      const int32_t begin = bucket_begin_[k], end = bucket_begin_[k - 1];
      for (int32_t i = begin; i < end; ++i) joined_[i] = add(order_[i], next_label, truth);
      // The best is the previous best or a root joined in this bucket: a root absorbed since
      // holds a smaller size than the root that absorbed it, which was joined too.
      for (int32_t i = begin; i < end; ++i) {
        const Component& joined = components_[joined_[i]];
        const int64_t key = (int64_t{joined.size} << 32) | static_cast<uint32_t>(INT32_MAX - joined.first);
        best_root = key > best_key ? joined_[i] : best_root;
        best_key = std::max(key, best_key);
      }
      int64_t* box = boxes + 4 * static_cast<int64_t>(k - 1);
      if (best_key == 0) {
        std::copy(empty_box_.begin(), empty_box_.end(), box);
      } else {
        const Component& best = components_[best_root];
        box[0] = best.box.x0();
        box[1] = best.box.y0();
        box[2] = best.box.x1() + 1;
        box[3] = best.box.y1() + 1;
      }
      if constexpr (kWithIoU) best_iou[k - 1] = heap_max_or(empty_iou);
    }
  }

 private:
  // Buckets every pixel and lists the pixels of buckets T..1 in that order (raster order
  // inside a bucket): bucket k is order_[bucket_begin_[k], bucket_begin_[k - 1]). Returns
  // false if the map holds NaN or Inf.
  bool sort_into_buckets(const scalar_t* map) {
    std::fill(cursor_.begin(), cursor_.end(), 0);
    const int64_t pixels = static_cast<int64_t>(height_) * width_;
    bool finite = true;
    for (int64_t i = 0; i < pixels; ++i) {
      const T value = static_cast<T>(map[i]);
      finite &= std::isfinite(value);
      const int32_t k = index_.count_below(value);
      bucket_[i] = k;
      ++cursor_[k];
    }
    if (!finite) return false;
    int32_t offset = 0;
    for (int32_t k = count_; k >= 1; --k) {
      const int32_t size = cursor_[k];
      bucket_begin_[k] = cursor_[k] = offset;
      offset += size;
    }
    bucket_begin_[0] = offset;
    for (int32_t y = 0, i = 0; y < height_; ++y) {
      for (int32_t x = 0; x < width_; ++x, ++i) {
        const int32_t k = bucket_[i];
        if (k > 0) order_[cursor_[k]++] = PackedBox::of_pixel(x, y);
      }
    }
    return true;
  }

  int32_t find(int32_t node) {  // a label's root label
    int32_t up = parent_[node];
    if (parent_[up] == up) return up;  // the common case: one step below the root
    while (parent_[node] != node) {  // path halving
      parent_[node] = parent_[parent_[node]];
      node = parent_[node];
    }
    return node;
  }

  int32_t unite(int32_t a, int32_t b) {
    if (components_[a].size < components_[b].size) std::swap(a, b);
    parent_[b] = a;
    Component& into = components_[a];
    const Component& from = components_[b];
    into.size += from.size;
    into.first = std::min(into.first, from.first);
    into.box = box_union(into.box, from.box);
    return a;
  }

  // Adds one pixel to the mask and returns the root it joined: the root of its first active
  // neighbour run (or a new component), united with the roots of the other runs.
  [[gnu::always_inline]] int32_t add(Pixel pixel, int32_t& next_label, MapTruth truth) {
    const int32_t w = padded_width_;
    const int32_t q = (pixel.y0() + 1) * w + pixel.x0() + 1;
    uint32_t* const cell = cells_.data() + q;
    uint32_t run_starts = kRunStarts.of[*cell >> kLabelBits];
    // Tell the neighbours that this pixel is in the mask: ring cell i sees it as its cell i + 4.
    for (int i = 0; i < 8; ++i) cell[ring_[i]] |= 1u << (kLabelBits + ((i + 4) & 7));
    // Neighbouring roots met and their records before the pixel (for the IoU heap).
    std::array<int32_t, 4> met{};
    std::array<Component, 4> met_before{};
    int32_t met_count = 0;
    int32_t root;
    if (run_starts == 0) {
      root = next_label++;
      parent_[root] = root;
      components_[root] = {1, q, pixel};
    } else {
      root = find(cell[ring_[__builtin_ctz(run_starts)]] & kLabelMask);
      run_starts &= run_starts - 1;
      if constexpr (kWithIoU) {
        met[met_count] = root;
        met_before[met_count++] = components_[root];
      }
      Component& joined = components_[root];
      ++joined.size;
      joined.first = std::min(joined.first, q);
      joined.box = box_union(joined.box, pixel);
      while (run_starts != 0) {
        const int32_t other = find(cell[ring_[__builtin_ctz(run_starts)]] & kLabelMask);
        run_starts &= run_starts - 1;
        if (other == root) continue;
        if constexpr (kWithIoU) {
          met[met_count] = other;
          met_before[met_count++] = components_[other];
        }
        root = unite(root, other);
      }
    }
    *cell = static_cast<uint32_t>(root);  // its own active-neighbour bits are not read again
    if constexpr (kWithIoU) {
      const Component& merged = components_[root];
      bool box_changed = true;  // a new root has no heap entry yet
      for (int32_t m = 0; m < met_count; ++m) {
        if (met[m] != root) continue;
        const Component& before = met_before[m];
        box_changed = !(before.box == merged.box);
      }
      if (box_changed) {
        stamp_[root] = ++stamp_counter_;
        const std::array<int32_t, 4> box{merged.box.x0(), merged.box.y0(), merged.box.x1() + 1,
                                         merged.box.y1() + 1};
        heap_.push_back({iou_of(box, truth), root, stamp_counter_});
        std::push_heap(heap_.begin(), heap_.end());
      }
    }
    return root;
  }

  static double iou_of(const std::array<int32_t, 4>& box, MapTruth truth) {
    return best_iou_against(box[0], box[1], box[2], box[3], truth.boxes, truth.count);
  }

  // Largest IoU among the current components (dropping entries of absorbed roots and of
  // boxes that have grown since), or `fallback` when there is no component.
  double heap_max_or(double fallback) {
    while (!heap_.empty()) {
      const HeapEntry& top = heap_.front();
      if (parent_[top.root] == top.root && stamp_[top.root] == top.stamp) return top.iou;
      std::pop_heap(heap_.begin(), heap_.end());
      heap_.pop_back();
    }
    return fallback;
  }

  const int32_t height_, width_, padded_width_, count_;
  const ThresholdIndex<T> index_;
  const std::array<int32_t, 4> empty_box_;
  std::array<int32_t, 8> ring_{};  // padded raster offsets of the ring cells
  // Padded raster, one word per pixel: before the pixel joins the mask, bit kLabelBits + i
  // says ring cell i is in the mask; after, the low kLabelBits hold the label it joined.
  std::vector<uint32_t> cells_;
  std::vector<int32_t> parent_;  // union-find over labels
  std::vector<Component> components_;
  std::vector<int32_t> bucket_;
  std::vector<int32_t> bucket_begin_;
  std::vector<int32_t> cursor_;
  std::vector<Pixel> order_;
  std::vector<int32_t> joined_;  // joined_[i]: the root pixel order_[i] joined
  std::vector<int32_t> stamp_;
  std::vector<HeapEntry> heap_;
  int32_t stamp_counter_ = 0;
};

template <typename scalar_t, bool kWithIoU>
void sweep_maps(const at::Tensor& maps, const at::Tensor& thresholds, bool empty_full,
                const at::Tensor& gt_boxes, const at::Tensor& gt_counts, at::Tensor& boxes,
                at::Tensor& best_iou) {
  using T = at::opmath_type<scalar_t>;
  const int64_t count = maps.size(0);
  const int32_t height = static_cast<int32_t>(maps.size(1));
  const int32_t width = static_cast<int32_t>(maps.size(2));
  const int32_t levels = static_cast<int32_t>(thresholds.size(0));
  const int64_t pixels = static_cast<int64_t>(height) * width;
  const scalar_t* input = maps.const_data_ptr<scalar_t>();
  const T* levels_data = thresholds.const_data_ptr<T>();
  int64_t* boxes_data = boxes.mutable_data_ptr<int64_t>();
  double* iou_data = kWithIoU ? best_iou.mutable_data_ptr<double>() : nullptr;
  const double* truth_data = kWithIoU ? gt_boxes.const_data_ptr<double>() : nullptr;
  const int64_t* truth_counts = kWithIoU ? gt_counts.const_data_ptr<int64_t>() : nullptr;
  const int64_t truth_stride = kWithIoU ? 4 * gt_boxes.size(1) : 0;
  at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
    ComponentSweep<scalar_t, kWithIoU> sweep(height, width, levels_data, levels, empty_full);
    for (int64_t map = begin; map < end; ++map) {
      MapTruth truth{nullptr, 0};
      if constexpr (kWithIoU) truth = {truth_data + map * truth_stride, truth_counts[map]};
      sweep.run(input + map * pixels, map, boxes_data + map * levels * 4,
                kWithIoU ? iou_data + map * levels : nullptr, truth);
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> threshold_sweep_cpu(const at::Tensor& maps,
                                                       const at::Tensor& thresholds,
                                                       bool empty_full,
                                                       const at::Tensor& gt_boxes,
                                                       const at::Tensor& gt_counts) {
  // Coordinates fit the 16-bit lanes of PackedBox, labels the low bits of a cell.
  TORCH_CHECK_VALUE(maps.size(1) <= INT16_MAX && maps.size(2) <= INT16_MAX &&
                        (maps.size(1) + 1) / 2 * ((maps.size(2) + 1) / 2) <= kLabelMask,
                    "largest_component_boxes: maps of shape ", maps.sizes(),
                    " are too large for the CPU op (at most 32767 pixels a side and 2^26 pixels)");
  const int64_t count = maps.size(0);
  const int64_t levels = thresholds.size(0);
  at::Tensor boxes = at::empty({count, levels, 4}, maps.options().dtype(at::kLong));
  const bool with_iou = gt_boxes.defined();
  at::Tensor best_iou;
  if (with_iou) best_iou = at::empty({count, levels}, maps.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, maps.scalar_type(),
                                  "threshold_sweep_cpu", [&] {
    if (with_iou) {
      sweep_maps<scalar_t, true>(maps, thresholds, empty_full, gt_boxes, gt_counts, boxes, best_iou);
    } else {
      sweep_maps<scalar_t, false>(maps, thresholds, empty_full, gt_boxes, gt_counts, boxes, best_iou);
    }
  });
  return {boxes, best_iou};
}

}  // namespace wsol
