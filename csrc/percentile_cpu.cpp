// Percentile-max normalization on the CPU: per map, the p-th percentile by selection
// (std::nth_element), then clamp(M / P, 0, 1). Maps run in parallel (at::parallel_for).
#include "eval_ops.h"

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

namespace wsol {
namespace {

// p-th percentile of values[0, n) (reordered in place).
template <typename T>
T select_percentile(T* values, int64_t n, const PercentilePlan& plan) {
  if (plan.take_max) return *std::max_element(values, values + n);
  T* lower = values + plan.lower;
  std::nth_element(values, lower, values + n);
  if (plan.gamma == 0.0) return *lower;
  const T above = *std::min_element(lower + 1, values + n);
  return numpy_lerp(*lower, above, plan.gamma);
}

template <typename scalar_t>
void normalize_maps(const at::Tensor& maps, at::Tensor& out, double p) {
  using T = at::opmath_type<scalar_t>;
  const int64_t count = maps.size(0);
  const int64_t n = maps.size(1) * maps.size(2);
  const PercentilePlan plan = plan_percentile(n, p);
  const scalar_t* input = maps.const_data_ptr<scalar_t>();
  float* output = out.mutable_data_ptr<float>();
  at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> values(n);
    for (int64_t map = begin; map < end; ++map) {
      const scalar_t* source = input + map * n;
      bool finite = true;
      for (int64_t i = 0; i < n; ++i) {
        values[i] = static_cast<T>(source[i]);
        finite &= std::isfinite(values[i]);
      }
      TORCH_CHECK_VALUE(finite, "percentile_max_normalize: map ", map, " contains NaN or Inf");
      const T level = select_percentile(values.data(), n, plan);
      float* target = output + map * n;
      for (int64_t i = 0; i < n; ++i) target[i] = clamped_ratio(static_cast<T>(source[i]), level);
    }
  });
}

}  // namespace

at::Tensor percentile_max_normalize_cpu(const at::Tensor& maps, double p) {
  at::Tensor out = at::empty(maps.sizes(), maps.options().dtype(at::kFloat));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, maps.scalar_type(),
                                  "percentile_max_normalize_cpu",
                                  [&] { normalize_maps<scalar_t>(maps, out, p); });
  return out;
}

}  // namespace wsol
