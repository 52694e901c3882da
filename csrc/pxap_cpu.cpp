// PxAP histograms on the CPU: every pixel's bin among the ascending float64 edges by binary
// search (numpy.histogram's bins, histogram_bin), counted into its map's mask row or other row
// (ignored pixels outside the mask in neither). Maps run in parallel (at::parallel_for), each
// into its own rows.
#include "eval_ops.h"

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <cmath>

namespace wsol {
namespace {

// counts (B, 2, bins) int64 += the histograms of every map; bad[map] := 1 for NaN or Inf.
template <typename scalar_t>
void count_maps(const at::Tensor& maps, const at::Tensor& masks, const at::Tensor& ignore,
                const at::Tensor& edges, at::Tensor& counts, at::Tensor& bad) {
  using T = at::opmath_type<scalar_t>;
  const int64_t pixels = maps.size(1) * maps.size(2);
  const int num_edges = static_cast<int>(edges.numel());
  const int64_t bins = num_edges - 1;
  const scalar_t* values = maps.const_data_ptr<scalar_t>();
  const bool* foreground = masks.const_data_ptr<bool>();
  const bool* ignored = ignore.defined() ? ignore.const_data_ptr<bool>() : nullptr;
  const double* edge = edges.const_data_ptr<double>();
  int64_t* rows = counts.mutable_data_ptr<int64_t>();
  int* flags = bad.mutable_data_ptr<int>();
  at::parallel_for(0, maps.size(0), 1, [&](int64_t begin, int64_t end) {
    for (int64_t map = begin; map < end; ++map) {
      int64_t* row = rows + map * 2 * bins;
      bool finite = true;
      for (int64_t i = map * pixels; i < (map + 1) * pixels; ++i) {
        const double value = static_cast<double>(static_cast<T>(values[i]));  // exact
        finite &= std::isfinite(value);
        const bool in_mask = foreground[i];
        if (!in_mask && ignored != nullptr && ignored[i]) continue;
        const int bin = histogram_bin(value, edge, num_edges);
        if (bin >= 0) ++row[(in_mask ? 0 : bins) + bin];
      }
      if (!finite) flags[map] = 1;
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> pxap_histograms_cpu(const at::Tensor& maps,
                                                       const at::Tensor& masks,
                                                       const at::Tensor& ignore,
                                                       const at::Tensor& edges) {
  const int64_t count = maps.size(0);
  at::Tensor counts = at::zeros({count, 2, edges.numel() - 1}, maps.options().dtype(at::kLong));
  at::Tensor bad = at::zeros({count}, maps.options().dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, maps.scalar_type(), "pxap_histograms_cpu",
                                  [&] { count_maps<scalar_t>(maps, masks, ignore, edges, counts, bad); });
  check_no_bad_map(bad, "pxap_histograms");
  return {counts.select(1, 0), counts.select(1, 1)};
}

}  // namespace wsol
