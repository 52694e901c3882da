// PxAP histograms on the GPU: each block takes chunks of kChunk pixels of one map, bins every
// pixel among the ascending float64 edges by binary search (numpy.histogram's bins,
// histogram_bin) into a shared-memory histogram (edges copied there too) and adds it to the
// map's rows with global atomics. Edge lists too long for shared memory are searched and
// counted in global memory instead.
#include "eval_ops.h"

#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

namespace wsol {
namespace {

constexpr int kThreads = 256;
constexpr long long kChunk = 16LL * kThreads;  // pixels of one map per block and round
constexpr size_t kSharedLimit = 48 * 1024;    // dynamic shared memory without opting in

// Shared bytes for the edges (float64) and the (2, bins) uint32 histogram.
size_t shared_bytes(int num_edges) {
  return num_edges * sizeof(double) + 2 * (num_edges - 1) * sizeof(unsigned int);
}

// counts (B, 2, bins) += the histograms of the maps' chunks (items = B * chunks, chunks per
// map); bad[map] := 1 for NaN or Inf. `in_shared`: edges and histogram live in shared memory.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) histogram_kernel(
    const scalar_t* maps, const bool* masks, const bool* ignore, const double* edges, int num_edges,
    long long pixels, long long chunks, long long items, bool in_shared, unsigned long long* counts,
    int* bad) {
  using T = at::opmath_type<scalar_t>;
  extern __shared__ double shared[];  // edges, then the histogram
  const int bins = num_edges - 1;
  unsigned int* local = reinterpret_cast<unsigned int*>(shared + num_edges);
  if (in_shared) {
    for (int i = threadIdx.x; i < num_edges; i += blockDim.x) shared[i] = edges[i];
  }
  const double* edge = in_shared ? shared : edges;
  for (long long item = blockIdx.x; item < items; item += gridDim.x) {
    const long long map = item / chunks;
    const long long begin = map * pixels + (item % chunks) * kChunk;
    const long long end = begin + kChunk < (map + 1) * pixels ? begin + kChunk : (map + 1) * pixels;
    unsigned long long* rows = counts + map * 2 * bins;
    if (in_shared) {
      for (int i = threadIdx.x; i < 2 * bins; i += blockDim.x) local[i] = 0;
      __syncthreads();
    }
    bool finite = true;
    for (long long i = begin + threadIdx.x; i < end; i += blockDim.x) {
      const double value = static_cast<double>(static_cast<T>(maps[i]));  // exact
      finite &= isfinite(value);
      const bool in_mask = masks[i];
      if (!in_mask && ignore != nullptr && ignore[i]) continue;
      const int bin = histogram_bin(value, edge, num_edges);
      if (bin < 0) continue;
      const int slot = (in_mask ? 0 : bins) + bin;
      if (in_shared) {
        atomicAdd(local + slot, 1u);
      } else {
        atomicAdd(rows + slot, 1ull);
      }
    }
    if (!finite) bad[map] = 1;
    if (in_shared) {
      __syncthreads();
      for (int i = threadIdx.x; i < 2 * bins; i += blockDim.x) {
        if (local[i] != 0) atomicAdd(rows + i, static_cast<unsigned long long>(local[i]));
      }
      __syncthreads();  // the next item clears the histogram
    }
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> pxap_histograms_cuda(const at::Tensor& maps,
                                                        const at::Tensor& masks,
                                                        const at::Tensor& ignore,
                                                        const at::Tensor& edges) {
  const c10::cuda::CUDAGuard guard(maps.device());
  const long long count = maps.size(0);
  const long long pixels = maps.size(1) * maps.size(2);
  const int num_edges = static_cast<int>(edges.numel());
  at::Tensor counts = at::zeros({count, 2, num_edges - 1}, maps.options().dtype(at::kLong));
  at::Tensor bad = at::zeros({count}, maps.options().dtype(at::kInt));
  if (count == 0) return {counts.select(1, 0), counts.select(1, 1)};
  int processors = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&processors, cudaDevAttrMultiProcessorCount, maps.get_device()));
  const long long chunks = (pixels + kChunk - 1) / kChunk;
  const long long items = count * chunks;
  const int blocks = static_cast<int>(std::min<long long>(items, 8LL * processors));
  const bool in_shared = shared_bytes(num_edges) <= kSharedLimit;
  const size_t bytes = in_shared ? shared_bytes(num_edges) : 0;
  const bool* ignored = ignore.defined() ? ignore.const_data_ptr<bool>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, maps.scalar_type(), "pxap_histograms_cuda", [&] {
    histogram_kernel<scalar_t><<<blocks, kThreads, bytes, c10::cuda::getCurrentCUDAStream()>>>(
        maps.const_data_ptr<scalar_t>(), masks.const_data_ptr<bool>(), ignored,
        edges.const_data_ptr<double>(), num_edges, pixels, chunks, items, in_shared,
        reinterpret_cast<unsigned long long*>(counts.mutable_data_ptr<int64_t>()),
        bad.mutable_data_ptr<int>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  check_no_bad_map(bad, "pxap_histograms");
  return {counts.select(1, 0), counts.select(1, 1)};
}

}  // namespace wsol
