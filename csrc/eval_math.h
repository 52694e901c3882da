// Arithmetic shared by the C++ and CUDA evaluation ops (host and device), free of ATen so
// that the block algorithms can also be compiled on their own: numpy's percentile lerp, the
// clamped ratio of the normalizations and the "+1" IoU, all rounded exactly alike everywhere.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define WSOL_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define WSOL_HOST_DEVICE inline
#endif

namespace wsol {

// ---- Correctly rounded arithmetic that the compiler may not fuse into FMAs (the PyTorch
// reference rounds every product and sum on its own). ----

#ifdef __CUDA_ARCH__
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ float div_rn(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ double sub_rn(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ double div_rn(double a, double b) { return __ddiv_rn(a, b); }
#else
template <typename T>
inline T mul_rn(T a, T b) {
  volatile T product = a * b;  // the store rounds and keeps the product out of an FMA
  return product;
}
template <typename T>
inline T add_rn(T a, T b) { return a + b; }
template <typename T>
inline T sub_rn(T a, T b) { return a - b; }
template <typename T>
inline T div_rn(T a, T b) { return a / b; }
#endif

// ---- Percentile (numpy.percentile's default "linear" method). ----

// Where the p-th percentile of n sorted values lies: the lerp between order statistics
// `lower` and `lower + 1` with weight gamma, or the maximum.
struct PercentilePlan {
  int64_t lower;
  double gamma;
  bool take_max;
};

inline PercentilePlan plan_percentile(int64_t n, double p) {
  const double position = static_cast<double>(n - 1) * (p / 100.0);
  if (position >= static_cast<double>(n - 1)) return {n - 1, 0.0, true};
  const int64_t lower = static_cast<int64_t>(std::floor(position));
  return {lower, position - static_cast<double>(lower), false};
}

// numpy's _lerp in the compute type T: below + (above - below) * gamma, or, for gamma >= 0.5,
// above - (above - below) * (1 - gamma); the weight is rounded to T first (a Python scalar
// meeting a float32 tensor).
template <typename T>
WSOL_HOST_DEVICE T numpy_lerp(T below, T above, double gamma) {
  if (gamma == 0.0) return below;
  const T difference = sub_rn(above, below);
  if (gamma < 0.5) return add_rn(below, mul_rn(difference, static_cast<T>(gamma)));
  return sub_rn(above, mul_rn(difference, static_cast<T>(1.0 - gamma)));
}

// clamp(value / denominator, 0, 1) as float32; a denominator <= 0 gives the limit for a
// denominator falling to 0+: 1 where value > 0, else 0.
template <typename T>
WSOL_HOST_DEVICE float clamped_ratio(T value, T denominator) {
  if (!(denominator > T(0))) return value > T(0) ? 1.0f : 0.0f;
  const T ratio = div_rn(value, denominator);
  return static_cast<float>(ratio < T(0) ? T(0) : (ratio > T(1) ? T(1) : ratio));
}

// ---- IoU with the "+1" convention: area = (x1 - x0 + 1) * (y1 - y0 + 1). ----

WSOL_HOST_DEVICE double box_iou_plus_one(double ax0, double ay0, double ax1, double ay1,
                                         double bx0, double by0, double bx1, double by1) {
  const double width = fmin(ax1, bx1) - fmax(ax0, bx0) + 1.0;
  const double height = fmin(ay1, by1) - fmax(ay0, by0) + 1.0;
  const double intersection = mul_rn(fmax(width, 0.0), fmax(height, 0.0));
  const double area_a = mul_rn(ax1 - ax0 + 1.0, ay1 - ay0 + 1.0);
  const double area_b = mul_rn(bx1 - bx0 + 1.0, by1 - by0 + 1.0);
  const double union_area = sub_rn(add_rn(area_a, area_b), intersection);
  return union_area > 0.0 ? div_rn(intersection, union_area) : 0.0;
}

// Best IoU of box (x0, y0, x1, y1) against `count` boxes stored as 4 doubles each; 0 if none.
WSOL_HOST_DEVICE double best_iou_against(double x0, double y0, double x1, double y1,
                                         const double* gt, int64_t count) {
  double best = 0.0;
  for (int64_t k = 0; k < count; ++k) {
    const double* g = gt + 4 * k;
    best = fmax(best, box_iou_plus_one(x0, y0, x1, y1, g[0], g[1], g[2], g[3]));
  }
  return best;
}

}  // namespace wsol
