// Best "+1" IoU of every (image, threshold) box against the image's ground-truth boxes, on
// the CPU (images in parallel).
#include "eval_ops.h"

#include <ATen/Parallel.h>

namespace wsol {

at::Tensor best_box_iou_cpu(const at::Tensor& boxes, const at::Tensor& gt_boxes,
                            const at::Tensor& gt_counts) {
  const int64_t count = boxes.size(0);
  const int64_t levels = boxes.size(1);
  const int64_t truth_stride = 4 * gt_boxes.size(1);
  at::Tensor out = at::empty({count, levels}, boxes.options());
  const double* box_data = boxes.const_data_ptr<double>();
  const double* truth_data = gt_boxes.const_data_ptr<double>();
  const int64_t* truth_counts = gt_counts.const_data_ptr<int64_t>();
  double* out_data = out.mutable_data_ptr<double>();
  at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
    for (int64_t image = begin; image < end; ++image) {
      const double* truth = truth_data + image * truth_stride;
      for (int64_t level = 0; level < levels; ++level) {
        const double* box = box_data + 4 * (image * levels + level);
        out_data[image * levels + level] =
            best_iou_against(box[0], box[1], box[2], box[3], truth, truth_counts[image]);
      }
    }
  });
  return out;
}

}  // namespace wsol
