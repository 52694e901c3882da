// All-threshold largest-component boxes on the CPU, one pass per map.
//
// Every pixel goes to the bucket k = number of thresholds strictly below its value, so it is in
// the mask `map > t_j` exactly for j < k. Buckets are added from k = T down to 1 to a
// union-find over the 8-neighbourhood (union by size, path halving; a bitmap of the mask and a
// 3x3 lookup table give one find per run of active neighbours). Each pixel stores the label of
// the component it joined; the union-find runs over those labels, which are numbered densely
// as components are born, so the forest and its records (size, bounding box, first raster
// index) stay small and cache-resident while the pixels are visited out of raster order; after bucket k the
// largest component (ties: first raster index) is the box of threshold k - 1. Component keys
// (size, -first) only grow, so the best component is kept incrementally. With ground-truth
// boxes the pass also keeps a max-heap of every component's IoU (stale entries dropped lazily)
// for the best IoU over all components at every threshold (MaxBoxAccV2).
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

// Union-find record of a root label: component size, first raster (padded) index, inclusive box.
struct Component {
  int32_t size, first, x0, y0, x1, y1;
};

struct Pixel {
  int32_t index, x, y;  // padded raster index and coordinates
};

// For each 3x3 neighbourhood of active flags (bit 3 * row + column), the ring cells that
// start a run of consecutive active cells in the ring order NW, N, NE, E, SE, S, SW, W. Two
// consecutive ring cells are adjacent, so each run lies in one component: one find per run.
struct RunStarts {
  std::array<uint8_t, 512> of{};
  RunStarts() {
    constexpr int kRingBit[8] = {0, 1, 2, 5, 8, 7, 6, 3};  // ring cell -> neighbourhood bit
    for (int neighbourhood = 0; neighbourhood < 512; ++neighbourhood) {
      uint32_t active = 0;
      for (int i = 0; i < 8; ++i) active |= ((neighbourhood >> kRingBit[i]) & 1u) << i;
      const uint32_t previous = ((active << 1) | (active >> 7)) & 0xFFu;
      uint32_t starts = active & ~previous;
      if (active == 0xFFu) starts = 1u;  // the whole ring is one run
      of[neighbourhood] = static_cast<uint8_t>(starts);
    }
  }
};
const RunStarts kRunStarts;

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
        row_words_((width + 2 + 63) / 64 + 1),
        active_bits_(static_cast<size_t>(height + 2) * row_words_),
        label_(static_cast<size_t>(height + 2) * (width + 2)),
        parent_(static_cast<size_t>(height) * width),
        components_(parent_.size()),
        bucket_(static_cast<size_t>(height) * width),
        bucket_begin_(count + 1),
        cursor_(count + 1),
        order_(bucket_.size()) {
    const int32_t w = padded_width_;
    ring_ = {-w - 1, -w, -w + 1, 1, w + 1, w, w - 1, -1};  // consecutive cells are adjacent
    if constexpr (kWithIoU) stamp_.resize(parent_.size());
  }

  // Boxes (T, 4) and, with kWithIoU, best IoU over all components (T,) of one map.
  void run(const scalar_t* map, int64_t map_index, int64_t* boxes, double* best_iou,
           MapTruth truth) {
    TORCH_CHECK_VALUE(sort_into_buckets(map), "largest_component_boxes: map ", map_index,
                      " contains NaN or Inf");
    std::fill(active_bits_.begin(), active_bits_.end(), uint64_t{0});
    best_root_ = -1;
    next_label_ = 0;
    best_size_ = 0;
    best_first_ = INT32_MAX;
    double empty_iou = 0.0;
    if constexpr (kWithIoU) {
      heap_.clear();
      stamp_counter_ = 0;
      empty_iou = iou_of(empty_box_, truth);
    }
    for (int32_t k = count_; k >= 1; --k) {
      for (int32_t i = bucket_begin_[k]; i < bucket_begin_[k - 1]; ++i) add(order_[i], truth);
      int64_t* box = boxes + 4 * static_cast<int64_t>(k - 1);
      if (best_size_ == 0) {
        std::copy(empty_box_.begin(), empty_box_.end(), box);
      } else {
        const Component& best = components_[best_root_];
        box[0] = best.x0;
        box[1] = best.y0;
        box[2] = best.x1 + 1;
        box[3] = best.y1 + 1;
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
      const int32_t row = (y + 1) * padded_width_ + 1;
      for (int32_t x = 0; x < width_; ++x, ++i) {
        const int32_t k = bucket_[i];
        if (k > 0) order_[cursor_[k]++] = {row + x, x, y};
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
    into.x0 = std::min(into.x0, from.x0);
    into.y0 = std::min(into.y0, from.y0);
    into.x1 = std::max(into.x1, from.x1);
    into.y1 = std::max(into.y1, from.y1);
    return a;
  }

  // Adds one pixel to the mask: it joins the root of its first active neighbour run (or
  // starts a component), then the roots of the other runs are united with it.
  void add(const Pixel& pixel, MapTruth truth) {
    const int32_t q = pixel.index;
    uint32_t run_starts = kRunStarts.of[neighbourhood(pixel.x, pixel.y)];
    active_bits_[(pixel.y + 1) * row_words_ + ((pixel.x + 1) >> 6)] |=
        uint64_t{1} << ((pixel.x + 1) & 63);
    // Neighbouring roots met and their records before the pixel (for the IoU heap).
    std::array<int32_t, 4> met{};
    std::array<Component, 4> met_before{};
    int32_t met_count = 0;
    int32_t root;
    if (run_starts == 0) {
      root = next_label_++;
      parent_[root] = root;
      components_[root] = {1, q, pixel.x, pixel.y, pixel.x, pixel.y};
    } else {
      root = find(label_[q + ring_[__builtin_ctz(run_starts)]]);
      run_starts &= run_starts - 1;
      if constexpr (kWithIoU) {
        met[met_count] = root;
        met_before[met_count++] = components_[root];
      }
      Component& joined = components_[root];
      ++joined.size;
      joined.first = std::min(joined.first, q);
      joined.x0 = std::min(joined.x0, pixel.x);
      joined.y0 = std::min(joined.y0, pixel.y);
      joined.x1 = std::max(joined.x1, pixel.x);
      joined.y1 = std::max(joined.y1, pixel.y);
      while (run_starts != 0) {
        const int32_t other = find(label_[q + ring_[__builtin_ctz(run_starts)]]);
        run_starts &= run_starts - 1;
        if (other == root) continue;
        if constexpr (kWithIoU) {
          met[met_count] = other;
          met_before[met_count++] = components_[other];
        }
        root = unite(root, other);
      }
    }
    label_[q] = root;
    const Component& merged = components_[root];
    if (merged.size > best_size_ || (merged.size == best_size_ && merged.first < best_first_)) {
      best_root_ = root;
      best_size_ = merged.size;
      best_first_ = merged.first;
    }
    if constexpr (kWithIoU) {
      bool box_changed = true;  // a new root has no heap entry yet
      for (int32_t m = 0; m < met_count; ++m) {
        if (met[m] != root) continue;
        const Component& before = met_before[m];
        box_changed = before.x0 != merged.x0 || before.y0 != merged.y0 ||
                      before.x1 != merged.x1 || before.y1 != merged.y1;
      }
      if (box_changed) {
        stamp_[root] = ++stamp_counter_;
        const std::array<int32_t, 4> box{merged.x0, merged.y0, merged.x1 + 1, merged.y1 + 1};
        heap_.push_back({iou_of(box, truth), root, stamp_counter_});
        std::push_heap(heap_.begin(), heap_.end());
      }
    }
  }

  // Active flags of the 3x3 neighbourhood of pixel (x, y), bit 3 * row + column. Whole
  // aligned words are read (as they are written), so a flag set by the previous pixel is
  // forwarded from the store buffer.
  uint32_t neighbourhood(int32_t x, int32_t y) const {
    const uint64_t* row = active_bits_.data() + static_cast<size_t>(y) * row_words_ + (x >> 6);
    const int shift = x & 63;
    uint32_t bits = 0;
    for (int r = 0; r < 3; ++r, row += row_words_) {
      const uint64_t window = (row[0] >> shift) | (row[1] << 1 << (63 - shift));
      bits |= static_cast<uint32_t>(window & 7u) << (3 * r);
    }
    return bits;
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
  std::array<int32_t, 8> ring_{};
  const int32_t row_words_;
  std::vector<uint64_t> active_bits_;  // padded raster rows of words, one bit per pixel in the mask
  std::vector<int32_t> label_;  // padded raster: the label a pixel of the mask joined
  std::vector<int32_t> parent_;  // union-find over labels
  int32_t next_label_ = 0;
  std::vector<Component> components_;
  std::vector<int32_t> bucket_;
  std::vector<int32_t> bucket_begin_;
  std::vector<int32_t> cursor_;
  std::vector<Pixel> order_;
  int32_t best_root_ = -1, best_size_ = 0, best_first_ = INT32_MAX;
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
