// Percentile-max normalization on the CPU: per map, the p-th percentile by selection, then
// clamp(M / P, 0, 1). Selection first brackets the wanted ranks between two values drawn from
// a strided sample, keeps the values between them in one pass (checking the map for NaN /
// Inf on the way) and finishes with std::nth_element on those few. If the sample misled (the
// ranks fell outside the bracket), a radix pass over the top bits of the values'
// order-preserving integer keys (a histogram finds the bucket holding the wanted rank)
// narrows the values instead. Maps run in parallel (at::parallel_for).
#include "eval_ops.h"

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <limits>
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

// Selects order statistics: by a sampled bracket when the sample is right, else by radix
// rounds on the values' keys, kBits bits at a time from the top: a histogram finds the bucket
// holding the wanted rank and only that bucket's values are kept, until few are left (or the
// two ranks a lerp needs fall in different buckets). std::nth_element finishes on what is left.
template <typename T>
class PercentileSelect {
  static constexpr int kBits = 11;
  static constexpr int kKeyBits = 8 * sizeof(T);
  static constexpr size_t kSmall = 256;

 public:
  // The p-th percentile of values[0, n) (numpy's linear method) in type T; false if a value
  // is NaN or Inf. The first round reads the values where they are (checking them on the way);
  // later rounds read the kept copy.
  template <typename S>
  bool percentile(const S* values, int64_t n, const PercentilePlan& plan, T& result) {
    bool finite = true;
    if (plan.take_max) {
      T peak = -std::numeric_limits<T>::infinity();
      for (int64_t i = 0; i < n; ++i) {
        const T value = static_cast<T>(values[i]);
        finite &= std::isfinite(value);
        peak = std::max(peak, value);
      }
      result = peak;
      return finite;
    }
    int64_t rank = plan.lower;
    const int64_t extra = plan.gamma == 0.0 ? 0 : 1;  // the lerp also needs rank + 1
    if (n >= kSampledFrom) {
      int64_t below = 0, inside = 0;
      if (!keep_bracket(values, n, rank, rank + extra, below, inside)) return false;
      if (below <= rank && rank + extra < below + inside) {
        result = select(bracket_.data(), inside, rank - below, plan.gamma);
        return true;
      }
    }
    int shift = kKeyBits - kBits;
    if (!count_buckets(values, n, shift)) return false;
    int64_t below = 0;
    int bucket = wanted_bucket(rank, below);
    if (rank + extra < below + histogram_[bucket]) {  // both ranks in one bucket: keep only it
      kept_.resize(histogram_[bucket] + 1);  // + 1: the branch-free filter writes one ahead
      kept_.resize(keep_bucket(values, n, shift, bucket));
      rank -= below;
      for (shift -= kBits; shift > -kBits && kept_.size() > kSmall; shift -= kBits) {
        const int bits_shift = shift > 0 ? shift : 0;
        count_buckets(kept_.data(), static_cast<int64_t>(kept_.size()), bits_shift);
        bucket = wanted_bucket(rank, below);
        if (rank + extra >= below + histogram_[bucket]) break;  // the two ranks straddle buckets
        kept_.resize(keep_bucket(kept_.data(), static_cast<int64_t>(kept_.size()), bits_shift, bucket));
        rank -= below;
        if (shift <= 0) break;
      }
    } else {
      kept_.assign(values, values + n);  // converted to T
    }
    result = select(kept_.data(), static_cast<int64_t>(kept_.size()), rank, plan.gamma);
    return true;
  }

 private:
  static constexpr int64_t kSampledFrom = 4096;  // fewer values: straight to the radix rounds
  static constexpr int64_t kSample = 1024;

  // The order statistic `rank` of begin[0, size) (lerped with the next one by gamma).
  static T select(T* begin, int64_t size, int64_t rank, double gamma) {
    T* end = begin + size;
    T* lower = begin + rank;
    std::nth_element(begin, lower, end);
    return gamma == 0.0 ? *lower : numpy_lerp(*lower, *std::min_element(lower + 1, end), gamma);
  }

  // bracket_[0, inside) := the values between two sample values that should bracket ranks
  // [low, high] of values[0, n) (a few standard deviations of the sample's rank either side);
  // below := how many values lie under the bracket. False if a value is NaN or Inf.
  template <typename S>
  bool keep_bracket(const S* values, int64_t n, int64_t low, int64_t high, int64_t& below,
                    int64_t& inside) {
    sample_.resize(kSample);
    for (int64_t i = 0; i < kSample; ++i) sample_[i] = static_cast<T>(values[i * n / kSample]);
    // The sample rank of `rank`, moved by 4 standard deviations and 8 more to `side` (+-1).
    const auto sample_rank = [&](int64_t rank, double side) {
      const double fraction = static_cast<double>(rank) / static_cast<double>(n - 1);
      const double margin = 4.0 * std::sqrt(kSample * fraction * (1.0 - fraction)) + 8.0;
      return static_cast<int64_t>(std::floor(fraction * (kSample - 1) + side * margin));
    };
    const int64_t first = sample_rank(low, -1.0), last = sample_rank(high, 1.0);
    T from = -std::numeric_limits<T>::infinity(), to = std::numeric_limits<T>::infinity();
    if (first >= 0) {
      std::nth_element(sample_.begin(), sample_.begin() + first, sample_.end());
      from = sample_[first];
    }
    if (last < kSample) {
      std::nth_element(sample_.begin() + std::max<int64_t>(first + 1, 0), sample_.begin() + last, sample_.end());
      to = sample_[last];
    }
    if (static_cast<int64_t>(bracket_.size()) < n) bracket_.resize(n);
    T* kept = bracket_.data();
    bool finite = true;
    int64_t under = 0, size = 0;
    for (int64_t i = 0; i < n; ++i) {
      const T value = static_cast<T>(values[i]);
      finite &= std::isfinite(value);
      under += value < from;
      if (value >= from && value <= to) kept[size++] = value;
    }
    below = under;
    inside = size;
    return finite;
  }

  // histogram_ := how many of values[0, n) fall in each bucket; false if one is NaN or Inf.
  // Four interleaved partial histograms, so that runs of values in one bucket (smooth maps)
  // do not serialize on one counter.
  template <typename V>
  bool count_buckets(const V* values, int64_t n, int shift) {
    constexpr int kLanes = 4;
    std::fill(partial_.begin(), partial_.end(), 0);
    bool finite = true;
    for (int64_t i = 0; i < n; ++i) {
      const T value = static_cast<T>(values[i]);
      finite &= std::isfinite(value);
      ++partial_[((i % kLanes) << kBits) + bucket_of(value, shift)];
    }
    for (int b = 0; b < (1 << kBits); ++b) {
      int64_t total = 0;
      for (int lane = 0; lane < kLanes; ++lane) total += partial_[(lane << kBits) + b];
      histogram_[b] = total;
    }
    return finite;
  }

  // Moves the values of `bucket` to the front of kept_ (which may be `values` itself: writes
  // never pass reads) without branching; returns how many there are.
  template <typename V>
  size_t keep_bucket(const V* values, int64_t n, int shift, int bucket) {
    size_t size = 0;
    for (int64_t i = 0; i < n; ++i) {
      const T value = static_cast<T>(values[i]);
      kept_[size] = value;
      size += bucket_of(value, shift) == bucket;
    }
    return size;
  }

  // The histogram bucket holding rank `rank`; `below` = number of values in lower buckets.
  int wanted_bucket(int64_t rank, int64_t& below) const {
    int bucket = 0;
    below = 0;
    while (below + histogram_[bucket] <= rank) below += histogram_[bucket++];
    return bucket;
  }

  static int bucket_of(T value, int shift) {
    return static_cast<int>((order_key(value) >> shift) & ((1u << kBits) - 1));
  }

  std::array<int64_t, 1 << kBits> histogram_;
  std::array<int32_t, 4 << kBits> partial_;
  std::vector<T> kept_;
  std::vector<T> sample_;
  std::vector<T> bracket_;
};

// target[i] := clamp(source[i] / level, 0, 1) for i < n.
template <typename scalar_t, typename T>
WSOL_VECTOR_CLONES void divide_clamped(const scalar_t* source, int64_t n, T level,
                                       float* target) {
  for (int64_t i = 0; i < n; ++i) target[i] = clamped_ratio(static_cast<T>(source[i]), level);
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
    PercentileSelect<T> select;
    for (int64_t map = begin; map < end; ++map) {
      const scalar_t* source = input + map * n;
      T level;
      TORCH_CHECK_VALUE(select.percentile(source, n, plan, level), "percentile_max_normalize: map ",
                        map, " contains NaN or Inf");
      divide_clamped(source, n, level, output + map * n);
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
