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

// Union-find over frame pixels; each root holds its extent, its count of half squares (2 x
// contour area), and is its component's first pixel in raster order (the smallest index).
class Components {
 public:
  explicit Components(const Frame& frame) : node_(frame.size()), member_(frame.size(), 0) {
    for (int k = 0; k < 8; ++k) ring_[k] = kRing[k][0] * frame.stride + kRing[k][1];
  }

  bool member(int32_t i) const { return member_[i] != 0; }

  // Bit k set: ring neighbour k of pixel i is a member.
  int neighbours(int32_t i) const {
    int mask = 0;
    for (int k = 0; k < 8; ++k) mask |= member_[i + ring_[k]] << k;
    return mask;
  }
  int32_t ring(int k) const { return ring_[k]; }

  void add(int32_t i, int32_t y, int32_t x) {
    member_[i] = 1;
    node_[i] = {i, 0, {x, y, x, y}};
  }

  bool is_root(int32_t i) const { return node_[i].parent == i; }

  int32_t find(int32_t i) {
    while (node_[i].parent != i) {
      node_[i].parent = node_[node_[i].parent].parent;
      i = node_[i].parent;
    }
    return i;
  }

  // Joins the component of root a with that of pixel b; returns {surviving root, absorbed root
  // or -1}. The smaller index survives.
  std::pair<int32_t, int32_t> unite(int32_t a, int32_t b) {
    b = find(b);
    if (a == b) return {a, -1};
    if (b < a) std::swap(a, b);
    Node& kept = node_[a];
    const Node& gone = node_[b];
    node_[b].parent = a;
    kept.extent = {std::min(kept.extent.x0, gone.extent.x0), std::min(kept.extent.y0, gone.extent.y0),
                   std::max(kept.extent.x1, gone.extent.x1), std::max(kept.extent.y1, gone.extent.y1)};
    kept.half_squares += gone.half_squares;
    return {a, b};
  }

  const Extent& extent(int32_t root) const { return node_[root].extent; }
  int64_t half_squares(int32_t root) const { return node_[root].half_squares; }
  void add_half_squares(int32_t root, int32_t halves) { node_[root].half_squares += halves; }

 private:
  struct Node {
    int32_t parent;
    int32_t half_squares;
    Extent extent;
  };
  std::vector<Node> node_;
  std::vector<uint8_t> member_;
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
  for (const int32_t i : frame.padding()) reached[i] = 1;
  for (const int32_t p : frame.padding())
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
  Components found(frame);
  const auto better = [&](int32_t a, int32_t b) {  // root a's contour is listed before b's
    return found.half_squares(a) > found.half_squares(b) ||
           (found.half_squares(a) == found.half_squares(b) && a > b);
  };
  // The best root so far. Only the root of the pixel just added changes, and keys only grow,
  // but for one case: the best merges with no area gained (its first pixel moves earlier); then
  // every root is looked at again at the next recorded threshold.
  int32_t best = -1;
  bool rescan = false;
  std::vector<int32_t> roots;  // every root, and roots absorbed since the last rescan
  boxes[kLevels] = {0, 0, 0, 0};  // threshold 255: nothing is above it
  for (int v = kLevels - 1; v >= 0; --v) {
    for (int32_t k = grouped.start[v]; k < grouped.start[v + 1]; ++k) {
      const int32_t i = grouped.order[k];
      const int mask = found.neighbours(i);
      found.add(i, grouped.row[k], grouped.column[k]);
      roots.push_back(i);
      int32_t root = i;
      for (const int8_t* n = kNeighbours.representatives[mask].data(); *n >= 0; ++n)
        root = found.unite(root, i + found.ring(*n)).first;
      // The squares with a corner at i that now have 3 or 4 member corners: half a square each.
      found.add_half_squares(root, kNeighbours.filled_squares[mask]);
      if (best >= 0 && !found.is_root(best)) {  // absorbed into root; it keeps its last count
        rescan = rescan || found.half_squares(root) == found.half_squares(best);
        best = root;
      }
      if (best < 0 || better(root, best)) best = root;
    }
    if (!needed[v]) continue;  // threshold v - 1
    if (rescan) {  // dropping the roots absorbed since the last look
      std::erase_if(roots, [&](int32_t i) { return !found.is_root(i); });
      for (const int32_t i : roots)
        if (better(i, best)) best = i;
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

// Best IoU over every outer contour (foreground components of level > t) at every threshold.
void outer_contour_ious(const std::vector<uint8_t>& level, const Frame& frame, const double* truth,
                        int64_t count, const std::array<bool, kThresholds>& needed,
                        std::array<double, kThresholds>& best, std::array<bool, kThresholds>& any) {
  const ByLevel grouped = group_by_level(level, frame);
  Components found(frame);
  RootSet alive(frame.size());
  RootIoU cache(frame.size(), truth, count);
  best[kLevels] = 0.0;
  any[kLevels] = false;
  for (int v = kLevels - 1; v >= 0; --v) {
    for (int32_t k = grouped.start[v]; k < grouped.start[v + 1]; ++k) {
      const int32_t i = grouped.order[k];
      const int mask = found.neighbours(i);
      found.add(i, grouped.row[k], grouped.column[k]);
      alive.insert(i);
      int32_t root = i;
      for (const int8_t* n = kNeighbours.representatives[mask].data(); *n >= 0; ++n) {
        const auto [joined, absorbed] = found.unite(root, i + found.ring(*n));
        if (absorbed >= 0) alive.erase(absorbed);
        root = joined;
      }
      cache.mark(root);
    }
    if (!needed[v]) continue;
    double top = 0.0;
    for (const int32_t root : alive.roots()) top = std::max(top, cache.get(root, contour_box(found.extent(root), frame)));
    best[v] = top;
    any[v] = !alive.roots().empty();
  }
}

// Best IoU over every hole contour (background components of level <= t not reaching the
// padding; a hole's border is one pixel outside it) at every threshold.
void hole_contour_ious(const std::vector<uint8_t>& level, const Frame& frame, const double* truth,
                       int64_t count, const std::array<bool, kThresholds>& needed,
                       std::array<double, kThresholds>& best) {
  const ByLevel grouped = group_by_level(level, frame);
  Components found(frame);
  RootSet alive(frame.size());
  RootIoU cache(frame.size(), truth, count);
  // The padding is one component, never alive: its root is pixel 0, the smallest index, so it
  // absorbs every hole that reaches it.
  for (const int32_t i : frame.padding()) {
    found.add(i, -1, -1);
    found.unite(0, i);  // pixel 0 is its own root throughout
  }
  best[0] = 0.0;  // threshold -1: no background
  for (int v = 0; v < kLevels; ++v) {
    for (int32_t k = grouped.start[v]; k < grouped.start[v + 1]; ++k) {
      const int32_t i = grouped.order[k];
      found.add(i, grouped.row[k], grouped.column[k]);
      alive.insert(i);
      int32_t root = i;
      for (const int32_t d : frame.four()) {
        if (!found.member(i + d)) continue;
        const auto [joined, absorbed] = found.unite(root, i + d);
        if (absorbed >= 0) alive.erase(absorbed);
        root = joined;
      }
      cache.mark(root);
    }
    if (!needed[v + 1]) continue;  // threshold v
    double top = 0.0;
    for (const int32_t root : alive.roots()) {
      const Extent& e = found.extent(root);
      top = std::max(top, cache.get(root, contour_box({e.x0 - 1, e.y0 - 1, e.x1 + 1, e.y1 + 1}, frame)));
    }
    best[v + 1] = top;
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
      std::array<double, kThresholds> outer{}, holes{};
      std::array<bool, kThresholds> any{};
      outer_contour_ious(level, frame, truth, truth_count, needed, outer, any);
      hole_contour_ious(level, frame, truth, truth_count, needed, holes);
      const double nothing = iou_of({0, 0, 0, 0}, truth, truth_count);
      for (int64_t t = 0; t < steps; ++t) {
        const int s = slot[t];
        iou_data[b * steps + t] = any[s] ? std::max(outer[s], holes[s]) : nothing;
      }
    }
  });
  return {boxes, best_iou};
}

}  // namespace wsol
