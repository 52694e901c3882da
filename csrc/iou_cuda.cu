// Best "+1" IoU of every (image, threshold) box against the image's ground-truth boxes, on
// the GPU (one thread per box).
#include "eval_ops.h"

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace wsol {
namespace {

constexpr int kThreads = 256;

__global__ void best_iou_kernel(const double* boxes, long long count, long long levels,
                                const double* truth, const int64_t* truth_counts,
                                long long truth_stride, double* out) {
  const long long index = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (index >= count * levels) return;
  const long long image = index / levels;
  const double* box = boxes + 4 * index;
  out[index] = best_iou_against(box[0], box[1], box[2], box[3], truth + image * truth_stride,
                                truth_counts[image]);
}

}  // namespace

at::Tensor best_box_iou_cuda(const at::Tensor& boxes, const at::Tensor& gt_boxes,
                             const at::Tensor& gt_counts) {
  const c10::cuda::CUDAGuard guard(boxes.device());
  const long long count = boxes.size(0), levels = boxes.size(1);
  at::Tensor out = at::empty({count, levels}, boxes.options());
  const long long total = count * levels;
  if (total == 0) return out;
  const long long blocks = (total + kThreads - 1) / kThreads;
  best_iou_kernel<<<blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      boxes.const_data_ptr<double>(), count, levels, gt_boxes.const_data_ptr<double>(),
      gt_counts.const_data_ptr<int64_t>(), 4 * gt_boxes.size(1), out.mutable_data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace wsol
