// Declarations of the evaluation ops (percentile normalization, all-threshold
// largest-component boxes with their best IoU), implemented in *_cpu.cpp and *_cuda.cu.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

#include "eval_math.h"

// CPU loops that the compiler vectorizes also get an AVX2 clone, picked when the library loads
// (x86-64 Linux with GCC or Clang, whose loader resolves such clones; elsewhere the one
// portable version).
#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define WSOL_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define WSOL_VECTOR_CLONES
#endif

namespace wsol {

// ---- Ops (CPU in *_cpu.cpp, CUDA in *_cuda.cu). Inputs are validated by the dispatchers in
// bindings.cpp; every op takes contiguous tensors of one device. ----

// clamp(M / P_p(M), 0, 1) per map; maps (B, H, W) floating -> float32 (B, H, W).
at::Tensor percentile_max_normalize_cpu(const at::Tensor& maps, double p);
// Largest 8-connected component box of maps > t for every t (ascending); (B, T, 4) int64.
// With gt_boxes (B, K, 4) float64 and gt_counts (B,) int64 defined, also the best IoU over
// all components at every threshold, (B, T) float64 (else an undefined tensor).
std::tuple<at::Tensor, at::Tensor> threshold_sweep_cpu(const at::Tensor& maps,
                                                       const at::Tensor& thresholds,
                                                       bool empty_full,
                                                       const at::Tensor& gt_boxes,
                                                       const at::Tensor& gt_counts);

// wsolevaluation's contour rule (csrc/contours_cpu.cpp) on uint8 levels (B, H, W) at integer
// thresholds (B, T) int64 (mask: level > threshold): the largest contour's box (B, T, 4) int64
// and, with gt_boxes / gt_counts defined, the best IoU over every contour (B, T) float64.
std::tuple<at::Tensor, at::Tensor> contour_sweep_cpu(const at::Tensor& levels,
                                                     const at::Tensor& thresholds,
                                                     const at::Tensor& gt_boxes,
                                                     const at::Tensor& gt_counts);

// numpy.histogram of each map's values at mask pixels and at other pixels (ignore (B, H, W)
// bool, or undefined: its pixels outside the mask count in neither) over ascending float64
// edges (E,); maps (B, H, W) floating, masks (B, H, W) bool -> ((B, E - 1), (B, E - 1)) int64.
std::tuple<at::Tensor, at::Tensor> pxap_histograms_cpu(const at::Tensor& maps,
                                                       const at::Tensor& masks,
                                                       const at::Tensor& ignore,
                                                       const at::Tensor& edges);

// numpy.histogram's bin of `value` among ascending edges [0, count): the i with
// edges[i] <= value < edges[i + 1], the last bin closed (edges[count - 1] included); -1 outside
// [edges[0], edges[count - 1]]. Compared in float64 (numpy too compares float32 values with
// float64 edges in float64).
WSOL_HOST_DEVICE int histogram_bin(double value, const double* edges, int count) {
  int low = 0, high = count;  // low ends as the number of edges <= value
  while (low < high) {
    const int middle = (low + high) / 2;
    if (edges[middle] <= value) {
      low = middle + 1;
    } else {
      high = middle;
    }
  }
  if (low == count) return value == edges[count - 1] ? count - 2 : -1;
  return low - 1;
}

// Raises ValueError naming the first map flagged in `bad` (B,) int32 (NaN or Inf found).
inline void check_no_bad_map(const at::Tensor& bad, const char* op) {
  const at::Tensor flagged = bad.nonzero();
  TORCH_CHECK_VALUE(flagged.numel() == 0, op, ": map ", flagged[0][0].item<int64_t>(),
                    " contains NaN or Inf");
}

#ifdef WITH_CUDA
at::Tensor percentile_max_normalize_cuda(const at::Tensor& maps, double p);
std::tuple<at::Tensor, at::Tensor> threshold_sweep_cuda(const at::Tensor& maps,
                                                        const at::Tensor& thresholds,
                                                        bool empty_full,
                                                        const at::Tensor& gt_boxes,
                                                        const at::Tensor& gt_counts);
std::tuple<at::Tensor, at::Tensor> pxap_histograms_cuda(const at::Tensor& maps,
                                                        const at::Tensor& masks,
                                                        const at::Tensor& ignore,
                                                        const at::Tensor& edges);
#endif

}  // namespace wsol
