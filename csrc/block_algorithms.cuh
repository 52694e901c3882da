// Block-parallel evaluation algorithms, one thread block per map: the percentile by radix
// select and the all-threshold component sweep. They are written against a small execution
// interface so that the same code runs as a CUDA block (percentile_cuda.cu, boxes_cuda.cu)
// and, on machines without a GPU, as a sequential emulation that runs every phase thread by
// thread in a shuffled order (tests/test_ext.py compiles it with the host compiler).
//
// Exec interface:
//   int threads() const;                 the block size
//   template <class F> void each(F f);   f(thread) on every thread of the block
//   template <class F> void leader(F f); f() on thread 0 only
//   void barrier();                      __syncthreads()
// Code outside each/leader runs on every thread on the GPU and once in the emulation, so it
// only reads values that are uniform across the block.
#pragma once

#include <cstdint>
#include <cstring>

#include "eval_math.h"

namespace wsol {
namespace block {

#ifdef __CUDACC__
#define WSOL_DEVICE __device__ __forceinline__
WSOL_DEVICE int atomic_add(int* target, int value) { return atomicAdd(target, value); }
WSOL_DEVICE int atomic_min(int* target, int value) { return atomicMin(target, value); }
WSOL_DEVICE int atomic_max(int* target, int value) { return atomicMax(target, value); }
WSOL_DEVICE unsigned long long atomic_max(unsigned long long* target, unsigned long long value) {
  return atomicMax(target, value);
}
// A load that other threads may be changing (no caching in registers or L1).
WSOL_DEVICE int load_shared_value(const int* source) {
  return *reinterpret_cast<const volatile int*>(source);
}
WSOL_DEVICE unsigned long long bits_of(double value) {
  return static_cast<unsigned long long>(__double_as_longlong(value));
}
WSOL_DEVICE double double_of(unsigned long long bits) {
  return __longlong_as_double(static_cast<long long>(bits));
}
WSOL_DEVICE uint32_t bits_of(float value) { return __float_as_uint(value); }
#else
#define WSOL_DEVICE inline
template <typename V>
inline V atomic_add(V* target, V value) {
  const V old = *target;
  *target = old + value;
  return old;
}
template <typename V>
inline V atomic_min(V* target, V value) {
  const V old = *target;
  *target = value < old ? value : old;
  return old;
}
template <typename V>
inline V atomic_max(V* target, V value) {
  const V old = *target;
  *target = value > old ? value : old;
  return old;
}
inline int load_shared_value(const int* source) { return *source; }
inline unsigned long long bits_of(double value) {
  unsigned long long bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}
inline double double_of(unsigned long long bits) {
  double value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}
inline uint32_t bits_of(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}
#endif

#ifdef __CUDACC__
// The Exec of a CUDA thread block.
struct CudaBlock {
  __device__ int threads() const { return static_cast<int>(blockDim.x); }
  template <class F>
  __device__ void each(F&& f) const { f(static_cast<int>(threadIdx.x)); }
  template <class F>
  __device__ void leader(F&& f) const {
    if (threadIdx.x == 0) f();
  }
  __device__ void barrier() const { __syncthreads(); }
};
#endif

// ---- Percentile by radix select ----

// Unsigned keys in the order of the floating values (negative values: all bits flipped).
WSOL_DEVICE uint32_t order_key(float value) {
  const uint32_t bits = bits_of(value);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}
WSOL_DEVICE float value_of_key(uint32_t key) {
  const uint32_t bits = (key & 0x80000000u) ? (key & 0x7FFFFFFFu) : ~key;
#ifdef __CUDACC__
  return __uint_as_float(bits);
#else
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
#endif
}
WSOL_DEVICE unsigned long long order_key(double value) {
  const unsigned long long bits = bits_of(value);
  return (bits >> 63) ? ~bits : (bits | (1ull << 63));
}
WSOL_DEVICE double value_of_key(unsigned long long key) {
  return double_of((key >> 63) ? (key & ~(1ull << 63)) : ~key);
}

struct SelectShared {
  unsigned histogram[256];
  int digit;
  long long remaining;
  int bad;
};

// histogram[bin] += 1 where counted. On the GPU the lanes of a warp that count the same bin add
// their number in one atomic: a map's candidates crowd into 1-3 bins in the first rounds (a
// sigmoid map shares its exponent byte), and one shared-memory atomic per pixel would then
// serialize the block. Warp-collective: every lane of a full warp calls it in the same turn (the
// kernels launch whole warps). The emulation adds one by one, which gives the same counts.
WSOL_DEVICE void count_into_histogram(unsigned* histogram, unsigned bin, bool counted) {
#ifdef __CUDACC__
  const unsigned peers = __match_any_sync(0xFFFFFFFFu, counted ? bin : 256u);
  const int lane = static_cast<int>(threadIdx.x & 31u);
  if (counted && lane == __ffs(static_cast<int>(peers)) - 1) {
    atomicAdd(&histogram[bin], static_cast<unsigned>(__popc(peers)));
  }
#else
  if (counted) ++histogram[bin];
#endif
}

// The rank-th smallest (0-based) of values[0, n) in the compute type T, one byte of the key
// per round: count the candidates' next byte, keep the byte holding the rank.
template <typename T, class Exec, typename scalar_t>
WSOL_DEVICE T select_rank(Exec& ex, SelectShared& sh, const scalar_t* values, long long n,
                          long long rank) {
  using Key = decltype(order_key(T(0)));
  Key prefix = 0, mask = 0;
  long long remaining = rank;
  for (int shift = 8 * static_cast<int>(sizeof(Key)) - 8; shift >= 0; shift -= 8) {
    ex.each([&](int thread) {
      for (int b = thread; b < 256; b += ex.threads()) sh.histogram[b] = 0;
    });
    ex.barrier();
    ex.each([&](int thread) {
      // Every thread takes the same number of turns (count_into_histogram is warp-collective).
      for (long long start = 0; start < n; start += ex.threads()) {
        const long long i = start + thread;
        Key key = 0;
        if (i < n) key = order_key(static_cast<T>(values[i]));
        count_into_histogram(sh.histogram, static_cast<unsigned>((key >> shift) & 0xFF),
                             i < n && (key & mask) == prefix);
      }
    });
    ex.barrier();
    ex.leader([&] {
      long long below = 0;
      int digit = 0;
      while (digit < 255 && below + sh.histogram[digit] <= remaining) below += sh.histogram[digit++];
      sh.digit = digit;
      sh.remaining = remaining - below;
    });
    ex.barrier();
    prefix |= static_cast<Key>(sh.digit) << shift;
    mask |= static_cast<Key>(0xFF) << shift;
    remaining = sh.remaining;
  }
  return value_of_key(prefix);
}

// clamp(M / P_p(M), 0, 1) of one map into out; false (and nothing written) if the map holds
// NaN or Inf. plan: plan_percentile(n, p).
template <typename T, class Exec, typename scalar_t>
WSOL_DEVICE bool normalize_map(Exec& ex, SelectShared& sh, const scalar_t* values, long long n,
                               const PercentilePlan& plan, float* out) {
  ex.leader([&] { sh.bad = 0; });
  ex.barrier();
  ex.each([&](int thread) {
    for (long long i = thread; i < n; i += ex.threads()) {
      const T value = static_cast<T>(values[i]);
      if (!(value - value == T(0))) sh.bad = 1;  // NaN or Inf
    }
  });
  ex.barrier();
  const bool bad = sh.bad != 0;
  ex.barrier();  // everyone has read sh.bad before a later map resets it
  if (bad) return false;
  T level = select_rank<T>(ex, sh, values, n, plan.lower);
  if (!plan.take_max && plan.gamma != 0.0) {
    const T above = select_rank<T>(ex, sh, values, n, plan.lower + 1);
    level = numpy_lerp(level, above, plan.gamma);
  }
  ex.each([&](int thread) {
    for (long long i = thread; i < n; i += ex.threads()) {
      out[i] = clamped_ratio(static_cast<T>(values[i]), level);
    }
  });
  ex.barrier();
  return true;
}

// ---- All-threshold component sweep ----
//
// Pixels go to bucket k = number of thresholds below their value (counting sort); buckets
// T..1 join a union-find one bucket per step: new pixels link to their active neighbours with
// the lock-free atomicMin union (a root is always its component's smallest raster index, so
// the tie rule "first pixel in raster order" is the smaller root). Roots absorbed in a step
// are listed and their sizes and boxes added to their new roots; then the largest component
// (size, then smaller root) is chosen among the roots of the new pixels and the previous best.
// With ground truth, the current roots are kept in a list with their boxes' best IoU.

struct SweepShared {
  unsigned long long candidate;  // best key (size << 32 | ~root) of this step
  unsigned long long best_key;   // 0: no component yet
  unsigned long long iou_bits;   // largest IoU of this step's roots (non-negative doubles)
  double best_iou;               // recorded IoU of the current threshold
  int best_root;
  int merged_count;
  int root_count;
  int next_count;
  int list;
  int bad;
};

// Global scratch of one block: 9 (11 with IoU) ints per pixel, 2 (T + 1) ints, and one double
// per pixel with IoU.
struct SweepScratch {
  int* bucket;
  int* order;
  int* parent;
  int* size;
  int* x0;
  int* y0;
  int* x1;  // inclusive maxima
  int* y1;
  int* merged;
  int* roots[2];
  double* iou;
  int* begin;   // bucket k is order[begin[k], begin[k - 1])
  int* cursor;

  static long long ints_needed(long long pixels, int levels, bool with_iou) {
    return (with_iou ? 11 : 9) * pixels + 2 * (static_cast<long long>(levels) + 1);
  }
  WSOL_DEVICE static SweepScratch carve(int* ints, double* doubles, long long pixels, int levels,
                                        bool with_iou) {
    SweepScratch s;
    int** parts[] = {&s.bucket, &s.order, &s.parent, &s.size, &s.x0, &s.y0, &s.x1, &s.y1, &s.merged};
    for (int** part : parts) {
      *part = ints;
      ints += pixels;
    }
    s.roots[0] = s.roots[1] = nullptr;
    s.iou = nullptr;
    if (with_iou) {
      s.roots[0] = ints;
      s.roots[1] = ints + pixels;
      ints += 2 * pixels;
      s.iou = doubles;
    }
    s.begin = ints;
    s.cursor = ints + levels + 1;
    return s;
  }
};

template <typename scalar_t, typename T>
struct SweepMap {
  const scalar_t* values;
  int height, width;
  const T* thresholds;  // ascending
  int levels;
  bool empty_full;
  const double* truth;  // truth_count boxes (x0, y0, x1, y1); with IoU only
  long long truth_count;
  long long* boxes;     // (levels, 4)
  double* best_iou;     // (levels,); with IoU only
};

template <typename T>
WSOL_DEVICE int count_below(const T* thresholds, int levels, T value) {
  int low = 0, high = levels;
  while (low < high) {
    const int middle = (low + high) / 2;
    if (thresholds[middle] < value) low = middle + 1;
    else high = middle;
  }
  return low;
}

WSOL_DEVICE int find_root(const int* parent, int node) {
  int up = load_shared_value(parent + node);
  while (up != node) {
    node = up;
    up = load_shared_value(parent + node);
  }
  return node;
}

// Lock-free union (Playne & Hawick): link the larger root under the smaller with atomicMin;
// a root absorbed here that was in the mask before this step (bucket > k) is listed.
WSOL_DEVICE void unite(int* parent, const int* bucket, int k, int a, int b, int* merged,
                       int* merged_count) {
  while (true) {
    a = find_root(parent, a);
    b = find_root(parent, b);
    if (a == b) return;
    if (a > b) {
      const int swap = a;
      a = b;
      b = swap;
    }
    const int old = atomic_min(parent + b, a);
    if (old == b) {
      if (bucket[b] > k) merged[atomic_add(merged_count, 1)] = b;
      return;
    }
    b = old;
  }
}

WSOL_DEVICE unsigned long long component_key(int size, int root) {
  return (static_cast<unsigned long long>(size) << 32) | (0xFFFFFFFFull - static_cast<unsigned>(root));
}

// Boxes (and with kWithIoU the best IoU over all components) of one map at all thresholds;
// false if the map holds NaN or Inf.
template <bool kWithIoU, class Exec, typename scalar_t, typename T>
WSOL_DEVICE bool sweep_map(Exec& ex, SweepShared& sh, const SweepScratch& s,
                           const SweepMap<scalar_t, T>& m) {
  const int width = m.width;
  const int pixels = m.height * m.width;
  const int levels = m.levels;
  const double empty_x1 = m.empty_full ? m.width : 0, empty_y1 = m.empty_full ? m.height : 0;

  ex.each([&](int thread) {
    for (int k = thread; k <= levels; k += ex.threads()) s.cursor[k] = 0;
  });
  ex.leader([&] {
    sh.bad = 0;
    sh.candidate = 0;
    sh.best_key = 0;
    sh.best_root = -1;
    sh.merged_count = 0;
    sh.root_count = 0;
    sh.next_count = 0;
    sh.list = 0;
    sh.iou_bits = 0;
    sh.best_iou = kWithIoU ? best_iou_against(0, 0, empty_x1, empty_y1, m.truth, m.truth_count) : 0.0;
  });
  ex.barrier();
  ex.each([&](int thread) {
    for (int i = thread; i < pixels; i += ex.threads()) {
      const T value = static_cast<T>(m.values[i]);
      if (!(value - value == T(0))) sh.bad = 1;  // NaN or Inf
      const int k = count_below(m.thresholds, levels, value);
      s.bucket[i] = k;
      atomic_add(s.cursor + k, 1);
    }
  });
  ex.barrier();
  const bool bad = sh.bad != 0;
  ex.barrier();  // everyone has read sh.bad before a later map resets it
  if (bad) return false;
  ex.leader([&] {
    int offset = 0;
    for (int k = levels; k >= 1; --k) {
      const int count = s.cursor[k];
      s.begin[k] = s.cursor[k] = offset;
      offset += count;
    }
    s.begin[0] = offset;
  });
  ex.barrier();
  ex.each([&](int thread) {
    for (int i = thread; i < pixels; i += ex.threads()) {
      const int k = s.bucket[i];
      if (k > 0) s.order[atomic_add(s.cursor + k, 1)] = i;
    }
  });
  ex.barrier();

  for (int k = levels; k >= 1; --k) {
    const int first = s.begin[k], end = s.begin[k - 1];
    if (first < end) {
      // A: the new pixels become empty singleton roots.
      ex.each([&](int thread) {
        for (int i = first + thread; i < end; i += ex.threads()) {
          const int p = s.order[i];
          s.parent[p] = p;
          s.size[p] = 0;
          s.x0[p] = s.y0[p] = 0x7FFFFFFF;
          s.x1[p] = s.y1[p] = -1;
        }
      });
      ex.barrier();
      // B: unite with active neighbours (pairs of new pixels once).
      ex.each([&](int thread) {
        for (int i = first + thread; i < end; i += ex.threads()) {
          const int p = s.order[i];
          const int y = p / width, x = p - y * width;
          for (int dy = -1; dy <= 1; ++dy) {
            if (y + dy < 0 || y + dy >= m.height) continue;
            for (int dx = -1; dx <= 1; ++dx) {
              if ((dx == 0 && dy == 0) || x + dx < 0 || x + dx >= width) continue;
              const int q = p + dy * width + dx;
              const int kq = s.bucket[q];
              if (kq > k || (kq == k && q < p)) unite(s.parent, s.bucket, k, p, q, s.merged, &sh.merged_count);
            }
          }
        }
      });
      ex.barrier();
      // C: sizes and boxes go to the final roots; paths are compressed.
      const int merged_count = sh.merged_count;
      ex.each([&](int thread) {
        for (int i = first + thread; i < end; i += ex.threads()) {
          const int p = s.order[i];
          const int root = find_root(s.parent, p);
          s.parent[p] = root;
          const int y = p / width, x = p - y * width;
          atomic_add(s.size + root, 1);
          atomic_min(s.x0 + root, x);
          atomic_min(s.y0 + root, y);
          atomic_max(s.x1 + root, x);
          atomic_max(s.y1 + root, y);
          for (int dy = -1; dy <= 1; ++dy) {
            if (y + dy < 0 || y + dy >= m.height) continue;
            for (int dx = -1; dx <= 1; ++dx) {
              if (x + dx < 0 || x + dx >= width) continue;
              const int q = p + dy * width + dx;
              if (s.bucket[q] > k) s.parent[q] = find_root(s.parent, q);
            }
          }
        }
        for (int j = thread; j < merged_count; j += ex.threads()) {
          const int absorbed = s.merged[j];
          const int root = find_root(s.parent, absorbed);
          s.parent[absorbed] = root;
          atomic_add(s.size + root, s.size[absorbed]);
          atomic_min(s.x0 + root, s.x0[absorbed]);
          atomic_min(s.y0 + root, s.y0[absorbed]);
          atomic_max(s.x1 + root, s.x1[absorbed]);
          atomic_max(s.y1 + root, s.y1[absorbed]);
        }
      });
      ex.barrier();
      // D: the best component is the previous best's root or a root of a new pixel.
      ex.each([&](int thread) {
        for (int i = first + thread; i < end; i += ex.threads()) {
          const int root = find_root(s.parent, s.order[i]);
          atomic_max(&sh.candidate, component_key(s.size[root], root));
        }
      });
      ex.leader([&] {
        if (sh.best_root >= 0) {
          const int root = find_root(s.parent, sh.best_root);
          atomic_max(&sh.candidate, component_key(s.size[root], root));
        }
      });
      ex.barrier();
      ex.leader([&] {
        sh.best_key = sh.candidate;
        sh.best_root = static_cast<int>(0xFFFFFFFFull - (sh.candidate & 0xFFFFFFFFull));
        sh.candidate = 0;
        sh.merged_count = 0;
      });
      ex.barrier();
      if constexpr (kWithIoU) {
        // F: IoU of every root that gained pixels; G: keep the roots, take the largest IoU.
        ex.each([&](int thread) {
          for (int i = first + thread; i < end; i += ex.threads()) {
            const int root = find_root(s.parent, s.order[i]);
            s.iou[root] = best_iou_against(s.x0[root], s.y0[root], s.x1[root] + 1.0,
                                           s.y1[root] + 1.0, m.truth, m.truth_count);
          }
        });
        ex.barrier();
        const int* current = s.roots[sh.list];
        int* next = s.roots[1 - sh.list];
        const int root_count = sh.root_count;
        ex.each([&](int thread) {
          for (int j = thread; j < root_count; j += ex.threads()) {
            const int root = current[j];
            if (s.parent[root] != root) continue;
            next[atomic_add(&sh.next_count, 1)] = root;
            atomic_max(&sh.iou_bits, bits_of(s.iou[root]));
          }
          for (int i = first + thread; i < end; i += ex.threads()) {
            const int p = s.order[i];
            if (s.parent[p] != p) continue;
            next[atomic_add(&sh.next_count, 1)] = p;
            atomic_max(&sh.iou_bits, bits_of(s.iou[p]));
          }
        });
        ex.barrier();
        ex.leader([&] {
          sh.list = 1 - sh.list;
          sh.root_count = sh.next_count;
          sh.next_count = 0;
          sh.best_iou = double_of(sh.iou_bits);
          sh.iou_bits = 0;
        });
      }
    }
    ex.leader([&] {
      long long* box = m.boxes + 4 * static_cast<long long>(k - 1);
      if (sh.best_key == 0) {
        box[0] = 0;
        box[1] = 0;
        box[2] = static_cast<long long>(empty_x1);
        box[3] = static_cast<long long>(empty_y1);
      } else {
        const int root = sh.best_root;
        box[0] = s.x0[root];
        box[1] = s.y0[root];
        box[2] = s.x1[root] + 1;
        box[3] = s.y1[root] + 1;
      }
      if constexpr (kWithIoU) m.best_iou[k - 1] = sh.best_iou;
    });
  }
  ex.barrier();
  return true;
}

}  // namespace block
}  // namespace wsol
