// Percentile-max normalization on the GPU: one thread block per map selects the percentile by
// radix select (block::normalize_map) and writes clamp(M / P, 0, 1).
#include "eval_ops.h"

#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "block_algorithms.cuh"

namespace wsol {
namespace {

constexpr int kThreads = 256;
static_assert(kThreads % 32 == 0, "block::count_into_histogram needs whole warps");

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) normalize_kernel(const scalar_t* maps, long long count,
                                                            long long pixels, PercentilePlan plan,
                                                            float* out, int* bad) {
  using T = at::opmath_type<scalar_t>;
  __shared__ block::SelectShared shared;
  block::CudaBlock ex;
  for (long long map = blockIdx.x; map < count; map += gridDim.x) {
    const bool finite = block::normalize_map<T>(ex, shared, maps + map * pixels, pixels, plan,
                                                out + map * pixels);
    if (!finite && threadIdx.x == 0) bad[map] = 1;
  }
}

}  // namespace

at::Tensor percentile_max_normalize_cuda(const at::Tensor& maps, double p) {
  const c10::cuda::CUDAGuard guard(maps.device());
  const long long count = maps.size(0);
  const long long pixels = maps.size(1) * maps.size(2);
  at::Tensor out = at::empty(maps.sizes(), maps.options().dtype(at::kFloat));
  at::Tensor bad = at::zeros({count}, maps.options().dtype(at::kInt));
  if (count == 0) return out;
  int processors = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&processors, cudaDevAttrMultiProcessorCount, maps.get_device()));
  const int blocks = static_cast<int>(std::min<long long>(count, 8LL * processors));
  const PercentilePlan plan = plan_percentile(pixels, p);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, maps.scalar_type(),
                                  "percentile_max_normalize_cuda", [&] {
    normalize_kernel<scalar_t><<<blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        maps.const_data_ptr<scalar_t>(), count, pixels, plan, out.mutable_data_ptr<float>(),
        bad.mutable_data_ptr<int>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  check_no_bad_map(bad, "percentile_max_normalize");
  return out;
}

}  // namespace wsol
