// wsolevaluation's box rule at every threshold of a uint8-quantized map, equal box for box to
// cv2.threshold(THRESH_BINARY) + cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE) +
// max(contours, key=cv2.contourArea) + cv2.boundingRect, without tracing a single contour.
//
// Why no tracing is needed (OpenCV pads the image with 0, the foreground is 8-connected and the
// background 4-connected, a contour is the polygon through the centres of its border pixels):
// * Contours: one outer contour per 8-connected foreground component C, its box the box of C;
//   one hole contour per 4-connected background component H not connected to the padding, its
//   border pixels the foreground 4-neighbours of H, so its box is H's box grown by one pixel.
// * Area: split the plane into the unit squares between 4 pixel centres; the polygons cover
//   1 of a square with 4 foreground corners, 1/2 of one with 3 and none of the others, so a
//   contour's area is the count of such squares inside it. The largest contour is always an
//   outermost one (a contour inside another is smaller, or an outer contour's own hole of the
//   same area, which OpenCV lists after it), and an outermost contour encloses exactly the
//   8-connected component of "not connected to the padding through background". A pixel p is
//   in that set at threshold t iff fill(p) > t, fill(p) being the lowest, over 4-paths from p to
//   the padding, of the highest level on the path (a priority flood from the border). So the
//   outermost contours of every threshold are the components of one union-find sweep over the
//   pixels by descending fill, their areas counted as squares gain their 3rd and 4th corner.
// * Ties: OpenCV lists outermost contours last-found first, i.e. by descending raster index of
//   their first pixel, and Python's max keeps the first maximum: the latest first pixel wins.
// Boxes follow wsolevaluation: x0 = x, y0 = y, x1 = min(x + w, W - 1), y1 = min(y + h, H - 1);
// no contour at all gives [0, 0, 0, 0]. MaxBoxAccV2 takes every contour: foreground components
// from a sweep by descending level, holes from a sweep of the background by ascending level.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <memory>
#include <cstdint>
#include <utility>
#include <vector>

#include "eval_ops.h"

namespace wsol {
namespace {

constexpr int kLevels = 256;           // uint8 values
constexpr int kThresholds = kLevels + 1;  // integer thresholds -1..255 (index = threshold + 1)

// Inclusive pixel extremes of a component, in image coordinates.
struct Extent {
  int32_t x0, y0, x1, y1;
};

// The image in a frame of one padding pixel, so that neighbours never need a bounds check.
struct Frame {
  int32_t height, width, stride;

  Frame(int32_t h, int32_t w) : height(h), width(w), stride(w + 2) {}
  int32_t size() const { return (height + 2) * stride; }
  int32_t index(int32_t y, int32_t x) const { return (y + 1) * stride + (x + 1); }  // image coords
  // Frame indices of the padding: the top and bottom rows, then both ends of every image row.
  std::vector<int32_t> padding() const {
    std::vector<int32_t> border;
    for (int32_t x = 0; x < stride; ++x) {
      border.push_back(x);
      border.push_back((height + 1) * stride + x);
    }
    for (int32_t y = 1; y <= height; ++y) {
      border.push_back(y * stride);
      border.push_back(y * stride + width + 1);
    }
    return border;
  }
  std::array<int32_t, 4> four() const { return {-stride, -1, 1, stride}; }
};

// The 8 neighbours of a pixel in ring order (NW, N, NE, E, SE, S, SW, W), as (dy, dx).
constexpr std::array<std::array<int, 2>, 8> kRing = {{{-1, -1}, {-1, 0}, {-1, 1}, {0, 1}, {1, 1}, {1, 0}, {1, -1}, {0, -1}}};

// Per set of member neighbours (bit k: ring position k): one neighbour per group of mutually
// 8-adjacent members (they are already one component, so one union per group suffices), and the
// number of the pixel's four squares that have 3 or 4 member corners with the pixel added.
struct NeighbourTable {
  std::array<std::array<int8_t, 5>, 256> representatives{};  // ring positions, -1 terminated
  std::array<uint8_t, 256> filled_squares{};

  NeighbourTable() {
    for (int mask = 0; mask < 256; ++mask) {
      std::array<int, 8> group{};
      for (int k = 0; k < 8; ++k) group[k] = k;
      const auto root = [&](int k) { while (group[k] != k) k = group[k]; return k; };
      for (int a = 0; a < 8; ++a)
        for (int b = a + 1; b < 8; ++b)
          if ((mask >> a & 1) && (mask >> b & 1) && std::abs(kRing[a][0] - kRing[b][0]) <= 1 &&
              std::abs(kRing[a][1] - kRing[b][1]) <= 1)
            group[root(b)] = root(a);
      int n = 0;
      for (int k = 0; k < 8; ++k)
        if ((mask >> k & 1) && root(k) == k) representatives[mask][n++] = static_cast<int8_t>(k);
      representatives[mask][n] = -1;
      // Squares NW (ring 7, 0, 1), NE (1, 2, 3), SE (3, 4, 5), SW (5, 6, 7), each with the pixel.
      int squares = 0;
      for (int corner = 0; corner < 4; ++corner) {
        const int others = (mask >> ((2 * corner + 7) % 8) & 1) + (mask >> (2 * corner) & 1) +
                           (mask >> (2 * corner + 1) & 1);
        squares += others >= 2;
      }
      filled_squares[mask] = static_cast<uint8_t>(squares);
    }
  }
};

const NeighbourTable kNeighbours;

// Per set of added ring neighbours: the 4-neighbours among them (N, E, S, W), -1 terminated;
// no two are 4-adjacent, so each may be a different component.
struct FourNeighbourTable {
  std::array<std::array<int8_t, 5>, 256> representatives{};

  FourNeighbourTable() {
    for (int mask = 0; mask < 256; ++mask) {
      int n = 0;
      for (const int k : {1, 3, 5, 7})
        if (mask >> k & 1) representatives[mask][n++] = static_cast<int8_t>(k);
      representatives[mask][n] = -1;
    }
  }
};

const FourNeighbourTable kFourNeighbours;

// Union-find over components numbered densely as they are born (so that its records stay
// small and cache-resident while pixels come out of raster order); each pixel keeps its
// component's label. A root's record holds its extent, its count of half squares (2 x contour
// area) and its first pixel in raster order.
class Components {
 public:
  explicit Components(const Frame& frame) : label_(new int32_t[frame.size()]) {
    for (int k = 0; k < 8; ++k) ring_[k] = kRing[k][0] * frame.stride + kRing[k][1];
    record_.reserve(1024);
  }

  int32_t ring(int k) const { return ring_[k]; }

  // Pixel i at image (y, x) joins root `root`, or starts a component when root < 0; returns the
  // pixel's root and whether it is new.
  std::pair<int32_t, bool> place(int32_t i, int32_t y, int32_t x, int32_t root) {
    const bool born = root < 0;
    if (born) {
      root = static_cast<int32_t>(record_.size());
      record_.push_back({root, 0, i, {x, y, x, y}});
    } else {
      Record& r = record_[root];
      r.extent = {std::min(r.extent.x0, x), std::min(r.extent.y0, y), std::max(r.extent.x1, x),
                  std::max(r.extent.y1, y)};
      r.first = std::min(r.first, i);
    }
    label_[i] = root;
    return {root, born};
  }

  // The root of the component of a placed pixel.
  int32_t root_of(int32_t pixel) { return find(label_[pixel]); }

  bool is_root(int32_t c) const { return record_[c].parent == c; }

  int32_t find(int32_t c) {
    while (record_[c].parent != c) {
      record_[c].parent = record_[record_[c].parent].parent;
      c = record_[c].parent;
    }
    return c;
  }

  // Joins roots a and b; returns {surviving root, absorbed root or -1}. The older survives.
  std::pair<int32_t, int32_t> unite(int32_t a, int32_t b) {
    if (a == b) return {a, -1};
    if (b < a) std::swap(a, b);
    Record& kept = record_[a];
    const Record& gone = record_[b];
    record_[b].parent = a;
    kept.extent = {std::min(kept.extent.x0, gone.extent.x0), std::min(kept.extent.y0, gone.extent.y0),
                   std::max(kept.extent.x1, gone.extent.x1), std::max(kept.extent.y1, gone.extent.y1)};
    kept.half_squares += gone.half_squares;
    kept.first = std::min(kept.first, gone.first);
    return {a, b};
  }

  // Places pixel i and joins it with the components of its added neighbours (one per group of
  // `representatives`); absorbed roots are passed to `gone`. Returns the pixel's root and whether
  // a component was born.
  template <typename Gone>
  std::pair<int32_t, bool> add(int32_t i, int32_t y, int32_t x, const int8_t* representatives, Gone&& gone) {
    const int8_t* n = representatives;
    const auto [root, born] = place(i, y, x, *n >= 0 ? root_of(i + ring_[*n++]) : -1);
    int32_t joined = root;
    for (; *n >= 0; ++n) {
      const auto [kept, absorbed] = unite(joined, root_of(i + ring_[*n]));
      if (absorbed >= 0) gone(absorbed);
      joined = kept;
    }
    return {joined, born};
  }

  const Extent& extent(int32_t root) const { return record_[root].extent; }
  int64_t half_squares(int32_t root) const { return record_[root].half_squares; }
  int32_t first(int32_t root) const { return record_[root].first; }
  void add_half_squares(int32_t root, int32_t halves) { record_[root].half_squares += halves; }
  int32_t count() const { return static_cast<int32_t>(record_.size()); }

 private:
  struct Record {
    int32_t parent;
    int32_t half_squares;
    int32_t first;  // raster index of the first pixel
    Extent extent;
  };
  std::unique_ptr<int32_t[]> label_;  // written when a pixel is placed
  std::vector<Record> record_;
  std::array<int32_t, 8> ring_{};
};

// Roots that are alive, with O(1) insertion and removal.
class RootSet {
 public:
  explicit RootSet(int32_t size) : position_(size, -1) {}
  void insert(int32_t root) {
    position_[root] = static_cast<int32_t>(roots_.size());
    roots_.push_back(root);
  }
  void erase(int32_t root) {
    const int32_t at = position_[root];
    roots_[at] = roots_.back();
    position_[roots_[at]] = at;
    roots_.pop_back();
    position_[root] = -1;
  }
  const std::vector<int32_t>& roots() const { return roots_; }

 private:
  std::vector<int32_t> position_;
  std::vector<int32_t> roots_;
};

// Frame pixels grouped by a level in [0, 255]: pixels of level v are order[start[v]:start[v+1]],
// with their image coordinates in row[] and column[].
struct ByLevel {
  std::vector<int32_t> order, row, column;
  std::array<int32_t, kLevels + 1> start{};
};

ByLevel group_by_level(const std::vector<uint8_t>& level, const Frame& frame) {
  ByLevel grouped;
  std::array<int32_t, kLevels + 1> count{};
  for (int32_t y = 0; y < frame.height; ++y)
    for (int32_t x = 0; x < frame.width; ++x) ++count[level[frame.index(y, x)] + 1];
  for (int v = 0; v < kLevels; ++v) count[v + 1] += count[v];
  grouped.start = count;
  const size_t pixels = static_cast<size_t>(frame.height) * frame.width;
  grouped.order.resize(pixels);
  grouped.row.resize(pixels);
  grouped.column.resize(pixels);
  for (int32_t y = 0; y < frame.height; ++y)
    for (int32_t x = 0; x < frame.width; ++x) {
      const int32_t i = frame.index(y, x);
      const int32_t k = count[level[i]]++;
      grouped.order[k] = i;
      grouped.row[k] = y;
      grouped.column[k] = x;
    }
  return grouped;
}

// Which ring neighbours (kRing bits) are already added when each pixel is, for pixels added by
// descending key, in raster order within a key: an earlier neighbour in raster order (NW, N,
// NE, W) with a key at least the pixel's, a later one (E, SE, S, SW) with a greater key. One
// pass in raster order, so the sweeps never look their neighbours up. `key` holds `value` of
// each image pixel (or 255 - value with `descending` false) and `padding` on the frame.
std::vector<uint8_t> added_before(const std::vector<uint8_t>& value, const Frame& frame, bool descending,
                                  int16_t padding) {
  std::vector<int16_t> key(frame.size(), padding);
  for (int32_t y = 0; y < frame.height; ++y)
    for (int32_t x = 0; x < frame.width; ++x) {
      const int32_t i = frame.index(y, x);
      key[i] = descending ? value[i] : static_cast<int16_t>(kLevels - 1 - value[i]);
    }
  std::vector<uint8_t> mask(frame.size(), 0);
  const int32_t s = frame.stride;
  for (int32_t y = 0; y < frame.height; ++y) {
    const int16_t* k = key.data() + frame.index(y, 0);
    uint8_t* m = mask.data() + frame.index(y, 0);
    for (int32_t x = 0; x < frame.width; ++x) {
      const int16_t c = k[x];
      m[x] = static_cast<uint8_t>((k[x - s - 1] >= c) | (k[x - s] >= c) << 1 | (k[x - s + 1] >= c) << 2 |
                                  (k[x + 1] > c) << 3 | (k[x + s + 1] > c) << 4 | (k[x + s] > c) << 5 |
                                  (k[x + s - 1] > c) << 6 | (k[x - 1] >= c) << 7);
    }
  }
  return mask;
}

// fill(p): the lowest, over 4-paths from p to the padding, of the highest level on the path;
// a priority flood from the image border with one bucket per level.
std::vector<uint8_t> fill_levels(const std::vector<uint8_t>& level, const Frame& frame) {
  std::vector<uint8_t> fill(frame.size(), 0);
  std::vector<uint8_t> reached(frame.size(), 0);
  std::vector<int32_t> next(frame.size(), -1);  // each level's queue as a linked list
  std::array<int32_t, kLevels> head, tail;
  head.fill(-1);
  tail.fill(-1);
  const auto push = [&](int32_t i, uint8_t v) {
    reached[i] = 1;
    fill[i] = v;
    (tail[v] < 0 ? head[v] : next[tail[v]]) = i;
    tail[v] = i;
  };
  const std::vector<int32_t> padding = frame.padding();
  for (const int32_t i : padding) reached[i] = 1;
  for (const int32_t p : padding)
    for (const int32_t d : frame.four()) {
      const int32_t i = p + d;
      if (i >= 0 && i < frame.size() && !reached[i]) push(i, level[i]);
    }
  for (int v = 0; v < kLevels; ++v)
    for (int32_t i = head[v]; i >= 0; i = next[i])  // the list may grow while it is read
      for (const int32_t d : frame.four())
        if (!reached[i + d]) push(i + d, std::max<uint8_t>(static_cast<uint8_t>(v), level[i + d]));
  return fill;
}

// wsolevaluation's box of a contour whose border pixels span `e`.
std::array<int64_t, 4> contour_box(const Extent& e, const Frame& frame) {
  return {e.x0, e.y0, std::min(e.x1 + 1, frame.width - 1), std::min(e.y1 + 1, frame.height - 1)};
}

// Box of the largest contour at every threshold (index threshold + 1), into boxes[kThresholds][4].
void largest_contour_boxes(const std::vector<uint8_t>& level, const Frame& frame,
                           const std::array<bool, kThresholds>& needed,
                           std::array<std::array<int64_t, 4>, kThresholds>& boxes) {
  const std::vector<uint8_t> fill = fill_levels(level, frame);
  const ByLevel grouped = group_by_level(fill, frame);
  const std::vector<uint8_t> before = added_before(fill, frame, true, -1);
  Components found(frame);
  const auto better = [&](int32_t a, int32_t b) {  // root a's contour is listed before b's
    return found.half_squares(a) > found.half_squares(b) ||
           (found.half_squares(a) == found.half_squares(b) && found.first(a) > found.first(b));
  };
  // The best root so far. Only the root of the pixel just added changes, and keys only grow,
  // but for one case: the best merges with no area gained and its first pixel moves earlier;
  // then every root is looked at again at the next recorded threshold.
  int32_t best = -1, best_first = -1;
  int64_t best_half_squares = -1;
  bool rescan = false;
  boxes[kLevels] = {0, 0, 0, 0};  // threshold 255: nothing is above it
  for (int v = kLevels - 1; v >= 0; --v) {
    for (int32_t k = grouped.start[v]; k < grouped.start[v + 1]; ++k) {
      const int32_t i = grouped.order[k];
      const int mask = before[i];
      const int32_t root = found.add(i, grouped.row[k], grouped.column[k], kNeighbours.representatives[mask].data(),
                                     [](int32_t) {}).first;
      // The squares with a corner at i that now have 3 or 4 added corners: half a square each.
      found.add_half_squares(root, kNeighbours.filled_squares[mask]);
      if (best >= 0 && found.find(best) == root) {  // the best grew, merged, or both
        rescan = rescan || (found.half_squares(root) == best_half_squares && found.first(root) < best_first);
        best = root;
      } else if (best < 0 || better(root, best)) {
        best = root;
      }
      best_half_squares = found.half_squares(best);
      best_first = found.first(best);
    }
    if (!needed[v]) continue;  // threshold v - 1
    if (rescan) {
      for (int32_t c = 0; c < found.count(); ++c)
        if (found.is_root(c) && better(c, best)) best = c;
      best_half_squares = found.half_squares(best);
      best_first = found.first(best);
      rescan = false;
    }
    boxes[v] = best >= 0 ? contour_box(found.extent(best), frame) : std::array<int64_t, 4>{0, 0, 0, 0};
  }
}

// Best IoU of a box against the image's ground truth.
double iou_of(const std::array<int64_t, 4>& b, const double* truth, int64_t count) {
  return best_iou_against(static_cast<double>(b[0]), static_cast<double>(b[1]), static_cast<double>(b[2]),
                          static_cast<double>(b[3]), truth, count);
}

// Cached best IoU per root, recomputed when the root's extent may have changed.
class RootIoU {
 public:
  RootIoU(int32_t size, const double* truth, int64_t count)
      : iou_(size, 0.0), stale_(size, 1), truth_(truth), count_(count) {}
  void mark(int32_t root) { stale_[root] = 1; }
  double get(int32_t root, const std::array<int64_t, 4>& box) {
    if (stale_[root]) {
      iou_[root] = iou_of(box, truth_, count_);
      stale_[root] = 0;
    }
    return iou_[root];
  }

 private:
  std::vector<double> iou_;
  std::vector<uint8_t> stale_;
  const double* truth_;
  int64_t count_;
};

// The components of the pixels added so far, the live ones (those a contour borders) and each
// one's best IoU, cached: the state of both contour-IoU sweeps below.
class ContourIoUs {
 public:
  ContourIoUs(const Frame& frame, const double* truth, int64_t count)
      : frame_(frame), found_(frame), alive_(frame.size()), cache_(frame.size(), truth, count) {}

  Components& components() { return found_; }

  // Adds the pixels of level `v`; `before[i]`: pixel i's neighbours added before it, whose
  // components it joins through `table`'s representatives.
  template <typename Table>
  void add_level(const ByLevel& grouped, int v, const std::vector<uint8_t>& before, const Table& table) {
    for (int32_t k = grouped.start[v]; k < grouped.start[v + 1]; ++k) {
      const int32_t i = grouped.order[k];
      const auto [root, born] = found_.add(i, grouped.row[k], grouped.column[k],
                                           table.representatives[before[i]].data(),
                                           [&](int32_t absorbed) { alive_.erase(absorbed); });
      if (born) alive_.insert(root);
      cache_.mark(root);
    }
  }

  // Best IoU over the live components' contours, each boxed as its extent grown by `grow` pixels.
  double best(int32_t grow) {
    double top = 0.0;
    for (const int32_t root : alive_.roots()) {
      const Extent& e = found_.extent(root);
      top = std::max(top, cache_.get(root, contour_box({e.x0 - grow, e.y0 - grow, e.x1 + grow, e.y1 + grow}, frame_)));
    }
    return top;
  }

 private:
  const Frame& frame_;
  Components found_;
  RootSet alive_;
  RootIoU cache_;
};

// Best IoU over every outer contour (foreground components of level > t) at every threshold;
// `grouped`: the pixels by level.
void outer_contour_ious(const std::vector<uint8_t>& level, const ByLevel& grouped, const Frame& frame,
                        const double* truth, int64_t count, const std::array<bool, kThresholds>& needed,
                        std::array<double, kThresholds>& best) {
  const std::vector<uint8_t> before = added_before(level, frame, true, -1);
  ContourIoUs sweep(frame, truth, count);
  best[kLevels] = 0.0;
  for (int v = kLevels - 1; v >= 0; --v) {
    sweep.add_level(grouped, v, before, kNeighbours);
    if (needed[v]) best[v] = sweep.best(0);
  }
}

// Best IoU over every hole contour (background components of level <= t not reaching the
// padding; a hole's border is one pixel outside it) at every threshold; `grouped`: the pixels by
// level.
void hole_contour_ious(const std::vector<uint8_t>& level, const ByLevel& grouped, const Frame& frame,
                       const double* truth, int64_t count, const std::array<bool, kThresholds>& needed,
                       std::array<double, kThresholds>& best) {
  const std::vector<uint8_t> before = added_before(level, frame, false, kLevels);  // the padding first
  ContourIoUs sweep(frame, truth, count);
  // The padding is one component, never live: the oldest, so it absorbs every hole reaching it.
  for (const int32_t i : frame.padding()) sweep.components().place(i, -1, -1, i == 0 ? -1 : 0);  // component 0
  best[0] = 0.0;  // threshold -1: no background
  for (int v = 0; v < kLevels; ++v) {
    sweep.add_level(grouped, v, before, kFourNeighbours);
    if (needed[v + 1]) best[v + 1] = sweep.best(1);  // threshold v
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> contour_sweep_cpu(const at::Tensor& levels, const at::Tensor& thresholds,
                                                     const at::Tensor& gt_boxes, const at::Tensor& gt_counts) {
  const int64_t count = levels.size(0);
  const int32_t height = static_cast<int32_t>(levels.size(1)), width = static_cast<int32_t>(levels.size(2));
  const int64_t steps = thresholds.size(1);
  const bool with_iou = gt_boxes.defined();
  at::Tensor boxes = at::empty({count, steps, 4}, levels.options().dtype(at::kLong));
  at::Tensor best_iou;
  if (with_iou) best_iou = at::empty({count, steps}, levels.options().dtype(at::kDouble));
  const uint8_t* level_data = levels.const_data_ptr<uint8_t>();
  const int64_t* threshold_data = thresholds.const_data_ptr<int64_t>();
  int64_t* box_data = boxes.mutable_data_ptr<int64_t>();
  double* iou_data = with_iou ? best_iou.mutable_data_ptr<double>() : nullptr;
  at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
    const Frame frame(height, width);
    for (int64_t b = begin; b < end; ++b) {
      std::vector<uint8_t> level(frame.size(), 0);
      const uint8_t* source = level_data + b * height * width;
      for (int32_t y = 0; y < height; ++y)
        for (int32_t x = 0; x < width; ++x) level[frame.index(y, x)] = source[y * width + x];
      std::array<bool, kThresholds> needed{};
      std::vector<int> slot(steps);
      for (int64_t t = 0; t < steps; ++t) {
        const int64_t threshold = std::clamp<int64_t>(threshold_data[b * steps + t], -1, kLevels - 1);
        slot[t] = static_cast<int>(threshold + 1);
        needed[slot[t]] = true;
      }
      std::array<std::array<int64_t, 4>, kThresholds> largest{};
      largest_contour_boxes(level, frame, needed, largest);
      for (int64_t t = 0; t < steps; ++t)
        for (int c = 0; c < 4; ++c) box_data[(b * steps + t) * 4 + c] = largest[slot[t]][c];
      if (!with_iou) continue;
      const double* truth = gt_boxes.const_data_ptr<double>() + b * gt_boxes.size(1) * 4;
      const int64_t truth_count = gt_counts.const_data_ptr<int64_t>()[b];
      const ByLevel grouped = group_by_level(level, frame);
      std::array<double, kThresholds> outer{}, holes{};
      outer_contour_ious(level, grouped, frame, truth, truth_count, needed, outer);
      hole_contour_ious(level, grouped, frame, truth, truth_count, needed, holes);
      // No contour at all (nothing above the threshold, index threshold + 1 > the highest level)
      // counts as the box [0, 0, 0, 0].
      int highest = kLevels - 1;
      while (highest > 0 && grouped.start[highest] == grouped.start[highest + 1]) --highest;
      const double nothing = iou_of({0, 0, 0, 0}, truth, truth_count);
      for (int64_t t = 0; t < steps; ++t) {
        const int s = slot[t];
        iou_data[b * steps + t] = s <= highest ? std::max(outer[s], holes[s]) : nothing;
      }
    }
  });
  return {boxes, best_iou};
}

}  // namespace wsol
