// All-threshold largest-component boxes on the GPU: one thread block per map runs the
// bucketed union-find sweep of block::sweep_map (grid-stride over the maps, each block with its
// own global scratch).
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

template <bool kWithIoU, typename scalar_t>
__global__ void __launch_bounds__(kThreads) sweep_kernel(
    const scalar_t* maps, long long count, int height, int width,
    const at::opmath_type<scalar_t>* thresholds, int levels, bool empty_full,
    const double* truth, const int64_t* truth_counts, long long truth_per_map, long long* boxes,
    double* best_iou, int* scratch_ints, long long ints_per_block, double* scratch_doubles,
    int* bad) {
  using T = at::opmath_type<scalar_t>;
  __shared__ block::SweepShared shared;
  block::CudaBlock ex;
  const long long pixels = static_cast<long long>(height) * width;
  const block::SweepScratch scratch = block::SweepScratch::carve(
      scratch_ints + blockIdx.x * ints_per_block,
      kWithIoU ? scratch_doubles + blockIdx.x * pixels : nullptr, pixels, levels, kWithIoU);
  for (long long map = blockIdx.x; map < count; map += gridDim.x) {
    const block::SweepMap<scalar_t, T> one{
        maps + map * pixels, height, width, thresholds, levels, empty_full,
        kWithIoU ? truth + 4 * truth_per_map * map : nullptr,
        kWithIoU ? static_cast<long long>(truth_counts[map]) : 0LL, boxes + 4LL * levels * map,
        kWithIoU ? best_iou + static_cast<long long>(levels) * map : nullptr};
    const bool finite = block::sweep_map<kWithIoU>(ex, shared, scratch, one);
    if (!finite && threadIdx.x == 0) bad[map] = 1;
  }
}

template <bool kWithIoU, typename scalar_t>
void launch_sweep(const at::Tensor& maps, const at::Tensor& thresholds, bool empty_full,
                  const at::Tensor& gt_boxes, const at::Tensor& gt_counts, at::Tensor& boxes,
                  at::Tensor& best_iou, at::Tensor& bad) {
  using T = at::opmath_type<scalar_t>;
  const long long count = maps.size(0);
  const int height = static_cast<int>(maps.size(1)), width = static_cast<int>(maps.size(2));
  const long long pixels = static_cast<long long>(height) * width;
  const int levels = static_cast<int>(thresholds.size(0));
  int processors = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&processors, cudaDevAttrMultiProcessorCount, maps.get_device()));
  const int blocks = static_cast<int>(std::min<long long>(count, 4LL * processors));
  const long long ints_per_block = block::SweepScratch::ints_needed(pixels, levels, kWithIoU);
  at::Tensor ints = at::empty({blocks * ints_per_block}, maps.options().dtype(at::kInt));
  at::Tensor doubles;
  if (kWithIoU) doubles = at::empty({blocks * pixels}, maps.options().dtype(at::kDouble));
  sweep_kernel<kWithIoU, scalar_t><<<blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      maps.const_data_ptr<scalar_t>(), count, height, width, thresholds.const_data_ptr<T>(), levels,
      empty_full, kWithIoU ? gt_boxes.const_data_ptr<double>() : nullptr,
      kWithIoU ? gt_counts.const_data_ptr<int64_t>() : nullptr, kWithIoU ? gt_boxes.size(1) : 0,
      reinterpret_cast<long long*>(boxes.mutable_data_ptr<int64_t>()),
      kWithIoU ? best_iou.mutable_data_ptr<double>() : nullptr, ints.mutable_data_ptr<int>(),
      ints_per_block, kWithIoU ? doubles.mutable_data_ptr<double>() : nullptr,
      bad.mutable_data_ptr<int>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> threshold_sweep_cuda(const at::Tensor& maps,
                                                        const at::Tensor& thresholds,
                                                        bool empty_full,
                                                        const at::Tensor& gt_boxes,
                                                        const at::Tensor& gt_counts) {
  const c10::cuda::CUDAGuard guard(maps.device());
  const long long count = maps.size(0), levels = thresholds.size(0);
  at::Tensor boxes = at::empty({count, levels, 4}, maps.options().dtype(at::kLong));
  const bool with_iou = gt_boxes.defined();
  at::Tensor best_iou;
  if (with_iou) best_iou = at::empty({count, levels}, maps.options().dtype(at::kDouble));
  if (count == 0) return {boxes, best_iou};
  at::Tensor bad = at::zeros({count}, maps.options().dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, maps.scalar_type(),
                                  "threshold_sweep_cuda", [&] {
    if (with_iou) {
      launch_sweep<true, scalar_t>(maps, thresholds, empty_full, gt_boxes, gt_counts, boxes,
                                   best_iou, bad);
    } else {
      launch_sweep<false, scalar_t>(maps, thresholds, empty_full, gt_boxes, gt_counts, boxes,
                                    best_iou, bad);
    }
  });
  check_no_bad_map(bad, "largest_component_boxes");
  return {boxes, best_iou};
}

}  // namespace wsol
