// All-threshold largest-component boxes on the CPU, one pass per map.
//
// Every pixel goes to the bucket k = number of thresholds strictly below its value, so it is in the
// mask `map > t_j` exactly for j < k. Buckets are added from k = T down to 1 (raster order inside a
// bucket) to a union-find over the 8-neighbourhood (union by size, path halving). Since the order
// is fixed by the buckets alone, which neighbours are already in the mask when a pixel joins (those
// of a higher bucket, and those of its own bucket before it in raster order) is known beforehand: a
// vectorized pass over the bucket raster computes it for every pixel, and the counting sort that
// orders the pixels stores with each one the cell starting its first run of active neighbours (and
// whether more runs follow: one find per run). The sweep then only reads the labels of those cells.
// Labels are numbered densely as components are born, so the forest and its records (size, first
// raster index, box packed in 16-bit lanes so that growing it is one lane-wise minimum) stay small
// and cache-resident while pixels are visited out of raster order. After bucket k the largest
// component (ties: first raster index) is the box of threshold k - 1, tracked as each pixel grows
// its root. With ground-truth boxes the pass also keeps a max-heap of every component's IoU (stale
// entries dropped lazily) for the best IoU over all components at every threshold (MaxBoxAccV2).
#include "eval_ops.h"

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

namespace wsol {
namespace {

// The cell of `value` in a grid of cells of width 1 / scale from `first`, clamped to the grid.
template <typename T>
inline int32_t grid_cell(T value, T first, T scale, T last_cell) {
  const T scaled = (value - first) * scale;
  const T capped = scaled < last_cell ? scaled : last_cell;  // NaN -> the last cell
  return static_cast<int32_t>(capped > T(0) ? capped : T(0));
}

// cells[i] := grid_cell(values[i], ...) for i < n; false if a value is NaN or Inf.
template <typename T>
WSOL_VECTOR_CLONES bool grid_cells(const T* values, int32_t n, T first, T scale,
                                   T last_cell, int32_t* cells) {
  int32_t special = 0;
  for (int32_t i = 0; i < n; ++i) {
    special |= !(std::fabs(values[i]) <= std::numeric_limits<T>::max());
    cells[i] = grid_cell(values[i], first, scale, last_cell);
  }
  return special == 0;
}

// Number of thresholds strictly below a value, by a table over a grid of cells. `grid_cell` is
// monotone in the value, so a threshold in a lower cell than the value is below it and one in
// a higher cell is above it: only the thresholds in the value's own cell need comparing. The
// grid is refined until no cell holds two thresholds (evenly spaced ones never share a cell
// of 2T); a cell that still does (repeated thresholds) is answered by a binary search.
template <typename T>
class ThresholdIndex {
 public:
  ThresholdIndex(const T* thresholds, int32_t count)
      : thresholds_(thresholds, thresholds + count), first_(thresholds[0]) {
    const double span = static_cast<double>(thresholds[count - 1]) - static_cast<double>(first_);
    for (int64_t cells = span > 0.0 ? 2 * int64_t{count} : 1;; cells *= 2) {
      scale_ = span > 0.0 ? static_cast<T>(cells / span) : T(0);
      last_cell_ = static_cast<T>(cells - 1);
      if (tabulate(cells) || cells >= kMaxCells) break;
    }
  }

  // cells[i] := the cell of values[i] for i < n; false if a value is NaN or Inf.
  bool cells_of(const T* values, int32_t n, int32_t* cells) const {
    return grid_cells(values, n, first_, scale_, last_cell_, cells);
  }

  // The number of thresholds below `value`, whose cell is `cell_index`.
  int32_t count_below(T value, int32_t cell_index) const {
    const Cell& cell = cells_[cell_index];
    if (cell.below < 0) [[unlikely]] {
      return static_cast<int32_t>(
          std::lower_bound(thresholds_.begin(), thresholds_.end(), value) - thresholds_.begin());
    }
    return cell.below + (value > cell.threshold);
  }

 private:
  static constexpr int64_t kMaxCells = int64_t{1} << 20;

  // Thresholds in lower cells, and the cell's one threshold (+inf if none); below = -1 if the
  // cell holds more than one.
  struct Cell {
    T threshold;
    int32_t below;
  };

  // Fills the table for the current grid; false if some cell holds two thresholds.
  bool tabulate(int64_t cells) {
    std::vector<int32_t> held(cells, 0);
    cells_.assign(cells, Cell{std::numeric_limits<T>::infinity(), 0});
    for (const T threshold : thresholds_) {
      const int32_t cell = grid_cell(threshold, first_, scale_, last_cell_);
      ++held[cell];
      cells_[cell].threshold = threshold;
    }
    int32_t below = 0;
    bool single = true;
    for (int64_t cell = 0; cell < cells; ++cell) {
      single &= held[cell] <= 1;
      cells_[cell].below = held[cell] <= 1 ? below : -1;
      below += held[cell];
    }
    return single;
  }

  std::vector<T> thresholds_;
  T first_, scale_{}, last_cell_{};
  std::vector<Cell> cells_;
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

// Union-find record of a root label: its key, the size in the high 32 bits and INT32_MAX minus
// the first raster (padded) index in the low ones (so that the larger key is the larger
// component, ties going to the first in raster order), and its box.
struct Component {
  static constexpr int64_t kSizes = ~int64_t{0xFFFFFFFF};
  static constexpr int64_t kOnePixel = int64_t{1} << 32;

  int64_t key;
  PackedBox box;

  static int32_t first_of(int64_t key) { return INT32_MAX - static_cast<int32_t>(key); }
  // The key after the pixel at padded index q joins.
  static int64_t with_pixel(int64_t key, int32_t q) {
    return std::max(key, (key & kSizes) | (INT32_MAX - q)) + kOnePixel;
  }
};

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

// active[x] for x in [1, width]: the neighbours of pixel x (between rows up and down) that are
// in the mask when it joins it (bit i: ring cell i): those of a higher bucket, and those of
// its own bucket that precede it in raster order.
template <typename Level>
WSOL_VECTOR_CLONES void mark_row(const Level* up, const Level* mid,
                                 const Level* down, int32_t width,
                                 uint8_t* active) {
  for (int32_t x = 1; x <= width; ++x) {
    const Level k = mid[x];
    active[x] = static_cast<uint8_t>(
        (up[x - 1] >= k) | (up[x] >= k) << 1 | (up[x + 1] >= k) << 2 | (mid[x + 1] > k) << 3 |
        (down[x + 1] > k) << 4 | (down[x] > k) << 5 | (down[x - 1] > k) << 6 |
        (mid[x - 1] >= k) << 7);
  }
}

// A pixel as the sweep adds it: its box, padded raster index and the first neighbour cell to
// read (everything the sweep needs in one load, none of it waiting on the sweep itself).
struct Event {
  PackedBox pixel;
  int32_t q;      // bit 31: more than one run of active neighbours
  int32_t first;  // padded index of the first run's start cell; negative if no neighbour is in
};

// The union of nothing: every lane at its maximum.
constexpr PackedBox kNoBox{{INT16_MAX, INT16_MAX, INT16_MAX, INT16_MAX}};

// A component's IoU as its box was when it entered the heap (out of date once the root is
// absorbed or its box has grown: boxes only grow, so an older box never comes back).
struct HeapEntry {
  double iou;
  int32_t root;
  PackedBox box;
  bool operator<(const HeapEntry& other) const { return iou < other.iou; }
};

// Ground truth of one map for the IoU pass: `count` boxes of 4 doubles.
struct MapTruth {
  const double* boxes;
  int64_t count;
};

// Level: the type of a pixel's bucket index (int16_t when the thresholds are few enough, so
// that the neighbour comparisons run on twice as many pixels per vector).
template <typename scalar_t, bool kWithIoU, typename Level>
class ComponentSweep {
  using T = at::opmath_type<scalar_t>;

 public:
  ComponentSweep(int32_t height, int32_t width, const T* thresholds, int32_t count,
                 bool empty_full)
      : height_(height), width_(width), padded_width_(width + 2), count_(count),
        index_(thresholds, count),
        empty_box_{0, 0, empty_full ? width : 0, empty_full ? height : 0},
        levels_(static_cast<size_t>(height + 2) * (width + 2), 0),
        active_(levels_.size()),
        labels_(levels_.size()),
        row_values_(width),
        row_cells_(width),
        parent_(static_cast<size_t>(height) * width),
        components_(parent_.size()),
        bucket_begin_(count + 1),
        cursor_(count + 1),
        events_(parent_.size()) {
    const int32_t w = padded_width_;
    ring_ = {-w - 1, -w, -w + 1, 1, w + 1, w, w - 1, -1};  // consecutive cells are adjacent
    for (uint32_t active = 0; active < 256; ++active) {
      const uint32_t starts = kRunStarts.of[active];
      // No run: an offset that takes any padded index (< 2^31, checked) below 0.
      first_run_[active] = {starts == 0 ? INT32_MIN : ring_[__builtin_ctz(starts)],
                            (starts & (starts - 1)) != 0 ? INT32_MIN : 0};
    }
    if constexpr (kWithIoU) pushed_box_.resize(parent_.size());
  }

  // Boxes (T, 4) and, with kWithIoU, best IoU over all components (T,) of one map.
  void run(const scalar_t* map, int64_t map_index, int64_t* boxes, double* best_iou,
           MapTruth truth) {
    TORCH_CHECK_VALUE(level_pixels(map), "largest_component_boxes: map ", map_index,
                      " contains NaN or Inf");
    mark_active_neighbours();
    sort_into_buckets();
    State state;
    double empty_iou = 0.0;
    if constexpr (kWithIoU) {
      heap_.clear();
      empty_iou = iou_of(empty_box_, truth);
    }
    for (int32_t k = count_; k >= 1; --k) {
      const Event* event = events_.data() + bucket_begin_[k];
      const Event* end = events_.data() + bucket_begin_[k - 1];
      for (; event != end; ++event) add(*event, state, truth);
      int64_t* box = boxes + 4 * static_cast<int64_t>(k - 1);
      if (state.best_key == 0) {
        std::copy(empty_box_.begin(), empty_box_.end(), box);
      } else {
        // The component's first pixel leads back to it.
        const Component& best = components_[find(labels_[Component::first_of(state.best_key)])];
        box[0] = best.box.x0();
        box[1] = best.box.y0();
        box[2] = best.box.x1() + 1;
        box[3] = best.box.y1() + 1;
      }
      if constexpr (kWithIoU) best_iou[k - 1] = heap_max_or(empty_iou);
    }
  }

 private:
  // The sweep's running state: the largest component so far as its key (size, -first raster
  // index) packed in 64 bits, one register to keep up per pixel (the first pixel's label
  // leads back to the component), and the next label to give.
  struct State {
    int64_t best_key = 0;
    int32_t next_label = 0;
  };

  // levels_ := every pixel's bucket (the border stays 0); cursor_[k] := the size of bucket k.
  // Returns false if the map holds NaN or Inf.
  bool level_pixels(const scalar_t* map) {
    std::fill(cursor_.begin(), cursor_.end(), 0);
    const int32_t width = width_;  // locals: the stores below may alias members
    int32_t* const counts = cursor_.data();
    int32_t* const cells = row_cells_.data();
    bool finite = true;
    for (int32_t y = 0; y < height_; ++y) {
      const scalar_t* row = map + static_cast<int64_t>(y) * width;
      const T* values = nullptr;
      if constexpr (std::is_same_v<scalar_t, T>) {
        values = row;
      } else {  // half and bfloat16 maps: converted once
        std::transform(row, row + width, row_values_.begin(), [](scalar_t v) { return static_cast<T>(v); });
        values = row_values_.data();
      }
      finite &= index_.cells_of(values, width, cells);
      Level* level = levels_.data() + static_cast<int64_t>(y + 1) * padded_width_ + 1;
      for (int32_t x = 0; x < width; ++x) {
        const int32_t k = index_.count_below(values[x], cells[x]);
        level[x] = static_cast<Level>(k);
        ++counts[k];
      }
    }
    return finite;
  }

  // active_[q] := the ring cells already in the mask when pixel q joins it (a bucket's pixels
  // join in raster order; the border's bucket 0 is never in).
  void mark_active_neighbours() {
    const int32_t w = padded_width_;
    for (int32_t y = 1; y <= height_; ++y) {
      const Level* mid = levels_.data() + static_cast<int64_t>(y) * w;
      mark_row(mid - w, mid, mid + w, width_, active_.data() + static_cast<int64_t>(y) * w);
    }
  }

  // Lists the pixels of buckets T..1 in that order (raster order inside a bucket), then those
  // of bucket 0 (never added): bucket k is events_[bucket_begin_[k], bucket_begin_[k - 1]).
  void sort_into_buckets() {
    int32_t offset = 0;
    for (int32_t k = count_; k >= 0; --k) {
      const int32_t size = cursor_[k];
      bucket_begin_[k] = cursor_[k] = offset;
      offset += size;
    }
    for (int32_t y = 0; y < height_; ++y) {
      const int32_t row = (y + 1) * padded_width_ + 1;
      const Level* level = levels_.data() + row;
      const uint8_t* active = active_.data() + row;
      for (int32_t x = 0; x < width_; ++x) {
        const FirstRun& run = first_run_[active[x]];
        const int32_t q = row + x;
        events_[cursor_[level[x]]++] = {PackedBox::of_pixel(x, y), q | run.more, q + run.offset};
      }
    }
  }

  int32_t find(int32_t node) {  // a label's root label
    const int32_t up = parent_[node];
    if (parent_[up] == up) [[likely]] return up;  // the common cases: a root, or one step below it
    while (parent_[node] != node) {  // path halving
      parent_[node] = parent_[parent_[node]];
      node = parent_[node];
    }
    return node;
  }

  int32_t unite(int32_t a, int32_t b) {
    if (components_[a].key < components_[b].key) std::swap(a, b);
    parent_[b] = a;
    Component& into = components_[a];
    const Component& from = components_[b];
    into.key = (into.key & Component::kSizes) + (from.key & Component::kSizes) +
               std::max(into.key & ~Component::kSizes, from.key & ~Component::kSizes);
    into.box = box_union(into.box, from.box);
    return a;
  }

  // Adds one pixel to the mask: it joins the root of its first active neighbour run (or a
  // new component), united with the roots of the other runs. The root then competes for the
  // best: a root that grows is the one a pixel joined, and one absorbed is outgrown by the
  // root that absorbed it.
  [[gnu::always_inline]] void add(const Event& event, State& state, MapTruth truth) {
    const int32_t q = event.q & INT32_MAX;
    int32_t root;
    if (event.first < 0) [[unlikely]] {
      root = state.next_label++;
      parent_[root] = root;
      components_[root] = {0, kNoBox};  // no pixel, first index INT32_MAX
      if constexpr (kWithIoU) pushed_box_[root] = kNoBox;
    } else {
      root = find(labels_[event.first]);
      if (event.q < 0) [[unlikely]] {  // the other runs
        uint32_t run_starts = kRunStarts.of[active_[q]];
        for (run_starts &= run_starts - 1; run_starts != 0; run_starts &= run_starts - 1) {
          const int32_t other = find(labels_[q + ring_[__builtin_ctz(run_starts)]]);
          if (other != root) root = unite(root, other);
        }
      }
    }
    labels_[q] = root;
    Component& record = components_[root];
    record.key = Component::with_pixel(record.key, q);
    record.box = box_union(record.box, event.pixel);
    state.best_key = std::max(record.key, state.best_key);
    if constexpr (kWithIoU) {
      if (!(record.box == pushed_box_[root])) {  // the root's heap entry is out of date
        pushed_box_[root] = record.box;
        const std::array<int32_t, 4> box{record.box.x0(), record.box.y0(), record.box.x1() + 1,
                                         record.box.y1() + 1};
        heap_.push_back({iou_of(box, truth), root, record.box});
        std::push_heap(heap_.begin(), heap_.end());
      }
    }
  }

  static double iou_of(const std::array<int32_t, 4>& box, MapTruth truth) {
    return best_iou_against(box[0], box[1], box[2], box[3], truth.boxes, truth.count);
  }

  // Largest IoU among the current components (dropping entries of absorbed roots and of
  // boxes that have grown since), or `fallback` when there is no component.
  double heap_max_or(double fallback) {
    while (!heap_.empty()) {
      const HeapEntry& top = heap_.front();
      if (parent_[top.root] == top.root && pushed_box_[top.root] == top.box) return top.iou;
      std::pop_heap(heap_.begin(), heap_.end());
      heap_.pop_back();
    }
    return fallback;
  }

  const int32_t height_, width_, padded_width_, count_;
  const ThresholdIndex<T> index_;
  const std::array<int32_t, 4> empty_box_;
  std::array<int32_t, 8> ring_{};  // padded raster offsets of the ring cells
  // For each set of active neighbours: the offset of its first run's start cell, and bit 31
  // set if it has more runs (the two fields of an Event besides the pixel).
  struct FirstRun {
    int32_t offset, more;
  };
  std::array<FirstRun, 256> first_run_{};
  // Padded rasters (a border of one pixel): each pixel's bucket, its neighbours already in
  // the mask when it joins, and the label it joined (read only once it has joined).
  std::vector<Level> levels_;
  std::vector<uint8_t> active_;
  std::vector<int32_t> labels_;
  std::vector<T> row_values_;  // one row of a half or bfloat16 map in the compute type
  std::vector<int32_t> row_cells_;  // and its threshold-table cells
  std::vector<int32_t> parent_;  // union-find over labels
  std::vector<Component> components_;
  std::vector<int32_t> bucket_begin_;
  std::vector<int32_t> cursor_;
  std::vector<Event> events_;
  std::vector<PackedBox> pushed_box_;  // with kWithIoU: the box of a root's latest heap entry
  std::vector<HeapEntry> heap_;
};

template <typename scalar_t, bool kWithIoU, typename Level>
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
    ComponentSweep<scalar_t, kWithIoU, Level> sweep(height, width, levels_data, levels, empty_full);
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
  // Coordinates fit the 16-bit lanes of PackedBox.
  TORCH_CHECK_VALUE(maps.size(1) <= INT16_MAX && maps.size(2) <= INT16_MAX,
                    "largest_component_boxes: maps of shape ", maps.sizes(),
                    " are too large for the CPU op (at most 32767 pixels a side)");
  const int64_t count = maps.size(0);
  const int64_t levels = thresholds.size(0);
  at::Tensor boxes = at::empty({count, levels, 4}, maps.options().dtype(at::kLong));
  const bool with_iou = gt_boxes.defined();
  at::Tensor best_iou;
  if (with_iou) best_iou = at::empty({count, levels}, maps.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, maps.scalar_type(),
                                  "threshold_sweep_cpu", [&] {
    const auto sweep = [&](auto level) {
      using Level = decltype(level);
      if (with_iou) {
        sweep_maps<scalar_t, true, Level>(maps, thresholds, empty_full, gt_boxes, gt_counts, boxes, best_iou);
      } else {
        sweep_maps<scalar_t, false, Level>(maps, thresholds, empty_full, gt_boxes, gt_counts, boxes, best_iou);
      }
    };
    if (levels <= INT16_MAX) {
      sweep(int16_t{});
    } else {
      sweep(int32_t{});
    }
  });
  return {boxes, best_iou};
}

}  // namespace wsol
