// Percentile-max normalization on the CPU: per map, the p-th percentile by selection, then
// clamp(M / P, 0, 1). Selection is a radix pass over the top bits of the values' order-preserving
// integer keys (a histogram finds the bucket holding the wanted rank) followed by
// std::nth_element over that bucket only. Maps run in parallel (at::parallel_for).
#include "eval_ops.h"

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <bit>
#include <vector>

namespace wsol {
namespace {

// Order-preserving unsigned key of a finite value (negative values below positive ones).
inline uint32_t order_key(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  return bits & 0x80000000u ? ~bits : bits | 0x80000000u;
}
inline uint64_t order_key(double value) {
  const uint64_t bits = std::bit_cast<uint64_t>(value);
  return bits & 0x8000000000000000ull ? ~bits : bits | 0x8000000000000000ull;
}

// Selects order statistics by radix rounds on the values' keys, kBits bits at a time from the
// top: a histogram finds the bucket holding the wanted rank and only that bucket's values are
// kept, until few are left (or the two ranks a lerp needs fall in different buckets); then
// std::nth_element finishes on what is left.
template <typename T>
class RadixSelect {
  static constexpr int kBits = 11;
  static constexpr int kKeyBits = 8 * sizeof(T);
  static constexpr size_t kSmall = 256;

 public:
  // The p-th percentile of values[0, n) (finite; numpy's linear method) in type T.
  template <typename S>
  T percentile(const S* values, int64_t n, const PercentilePlan& plan) {
    if (plan.take_max) return static_cast<T>(*std::max_element(values, values + n));
    kept_.assign(values, values + n);  // converted to T
    int64_t rank = plan.lower;
    const int64_t extra = plan.gamma == 0.0 ? 0 : 1;  // the lerp also needs rank + 1
    for (int shift = kKeyBits - kBits; shift > -kBits && kept_.size() > kSmall; shift -= kBits) {
      const int bits_shift = shift > 0 ? shift : 0;
      histogram_.fill(0);
      for (const T value : kept_) ++histogram_[bucket_of(value, bits_shift)];
      int bucket = 0;
      int64_t below = 0;
      while (below + histogram_[bucket] <= rank) below += histogram_[bucket++];
      if (rank + extra >= below + histogram_[bucket]) break;  // the two ranks straddle buckets
      size_t size = 0;
      for (const T value : kept_)
        if (bucket_of(value, bits_shift) == bucket) kept_[size++] = value;
      kept_.resize(size);
      rank -= below;
      if (shift <= 0) break;
    }
    T* begin = kept_.data();
    T* end = begin + kept_.size();
    T* lower = begin + rank;
    std::nth_element(begin, lower, end);
    if (plan.gamma == 0.0) return *lower;
    return numpy_lerp(*lower, *std::min_element(lower + 1, end), plan.gamma);
  }

 private:
  static int bucket_of(T value, int shift) {
    return static_cast<int>((order_key(value) >> shift) & ((1u << kBits) - 1));
  }

  std::array<int64_t, 1 << kBits> histogram_;
  std::vector<T> kept_;
};

template <typename scalar_t>
void normalize_maps(const at::Tensor& maps, at::Tensor& out, double p) {
  using T = at::opmath_type<scalar_t>;
  const int64_t count = maps.size(0);
  const int64_t n = maps.size(1) * maps.size(2);
  const PercentilePlan plan = plan_percentile(n, p);
  const scalar_t* input = maps.const_data_ptr<scalar_t>();
  float* output = out.mutable_data_ptr<float>();
  at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
    RadixSelect<T> select;
    for (int64_t map = begin; map < end; ++map) {
      const scalar_t* source = input + map * n;
      bool finite = true;
      for (int64_t i = 0; i < n; ++i) finite &= std::isfinite(static_cast<T>(source[i]));
      TORCH_CHECK_VALUE(finite, "percentile_max_normalize: map ", map, " contains NaN or Inf");
      const T level = select.percentile(source, n, plan);
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
