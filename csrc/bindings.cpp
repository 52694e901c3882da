// Python bindings of wsol_fast._C (evaluation ops): argument checks, then the CPU or CUDA
// implementation by the device of the maps.
#include <torch/extension.h>

#include <ATen/OpMathType.h>

#include <climits>
#include <optional>

#include "eval_ops.h"

namespace wsol {
namespace {

void check_maps(const at::Tensor& maps, const char* op) {
  TORCH_CHECK_VALUE(maps.dim() == 3 && at::isFloatingType(maps.scalar_type()), op,
              ": maps must be a floating (B, H, W) tensor, got ", maps.scalar_type(), " of shape ",
              maps.sizes());
  TORCH_CHECK_VALUE(maps.size(1) > 0 && maps.size(2) > 0, op, ": empty maps of shape ", maps.sizes());
  TORCH_CHECK_VALUE((maps.size(1) + 2) * (maps.size(2) + 2) < INT32_MAX, op, ": maps of shape ",
              maps.sizes(), " exceed 2^31 pixels");
}

#ifndef WITH_CUDA
void require_cuda_build(const char* op) {
  TORCH_CHECK(false, op, ": wsol_fast._C was built without CUDA; rebuild with a CUDA toolchain "
              "(or FORCE_CUDA=1) or move the tensors to the CPU");
}
#endif

at::Tensor percentile_max_normalize(const at::Tensor& maps, double p) {
  constexpr const char* op = "percentile_max_normalize";
  check_maps(maps, op);
  TORCH_CHECK_VALUE(p >= 0.0 && p <= 100.0, op, ": p=", p, " must lie in [0, 100]");
  const at::Tensor contiguous = maps.contiguous();
  if (maps.is_cuda()) {
#ifdef WITH_CUDA
    return percentile_max_normalize_cuda(contiguous, p);
#else
    require_cuda_build(op);
#endif
  }
  return percentile_max_normalize_cpu(contiguous, p);
}

std::tuple<at::Tensor, at::Tensor> threshold_sweep(const at::Tensor& maps,
                                                   const at::Tensor& thresholds, bool empty_full,
                                                   const std::optional<at::Tensor>& gt_boxes,
                                                   const std::optional<at::Tensor>& gt_counts) {
  constexpr const char* op = "largest_component_boxes";
  check_maps(maps, op);
  const at::ScalarType compute = at::toOpMathType(maps.scalar_type());
  TORCH_CHECK_VALUE(thresholds.dim() == 1 && thresholds.numel() > 0 &&
                  thresholds.scalar_type() == compute && thresholds.device() == maps.device(),
              op, ": thresholds must be a non-empty 1-D ", compute, " tensor on ", maps.device(),
              ", got ", thresholds.scalar_type(), " of shape ", thresholds.sizes(), " on ",
              thresholds.device());
  TORCH_CHECK_VALUE(thresholds.numel() < INT32_MAX, op, ": too many thresholds");
  TORCH_CHECK_VALUE(thresholds.numel() == 1 || at::all(thresholds.diff() >= 0).item<bool>(), op,
              ": thresholds must be ascending and not NaN");
  TORCH_CHECK_VALUE(gt_boxes.has_value() == gt_counts.has_value(), op,
              ": gt_boxes and gt_counts go together");
  at::Tensor truth, truth_counts;
  if (gt_boxes.has_value()) {
    truth = gt_boxes->contiguous();
    truth_counts = gt_counts->contiguous();
    TORCH_CHECK_VALUE(truth.dim() == 3 && truth.size(0) == maps.size(0) && truth.size(2) == 4 &&
                    truth.scalar_type() == at::kDouble && truth.device() == maps.device(),
                op, ": gt_boxes must be a float64 (B, K, 4) tensor beside the maps, got ",
                truth.scalar_type(), " of shape ", truth.sizes());
    TORCH_CHECK_VALUE(truth_counts.dim() == 1 && truth_counts.size(0) == maps.size(0) &&
                    truth_counts.scalar_type() == at::kLong &&
                    truth_counts.device() == maps.device(),
                op, ": gt_counts must be an int64 (B,) tensor beside the maps");
    TORCH_CHECK_VALUE(truth_counts.numel() == 0 ||
                    at::all((truth_counts >= 0) & (truth_counts <= truth.size(1))).item<bool>(),
                op, ": gt_counts must lie in [0, K=", truth.size(1), "]");
  }
  const at::Tensor contiguous = maps.contiguous();
  const at::Tensor levels = thresholds.contiguous();
  if (maps.is_cuda()) {
#ifdef WITH_CUDA
    return threshold_sweep_cuda(contiguous, levels, empty_full, truth, truth_counts);
#else
    require_cuda_build(op);
#endif
  }
  return threshold_sweep_cpu(contiguous, levels, empty_full, truth, truth_counts);
}

}  // namespace
}  // namespace wsol

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "wsol_fast evaluation ops (C++ and CUDA)";
#ifdef WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  m.def("percentile_max_normalize", &wsol::percentile_max_normalize, py::arg("maps"), py::arg("p"),
        "clamp(M / P_p(M), 0, 1) per map (numpy.percentile 'linear'); (B, H, W) -> float32");
  m.def("threshold_sweep", &wsol::threshold_sweep, py::arg("maps"), py::arg("thresholds"),
        py::arg("empty_full"), py::arg("gt_boxes") = py::none(), py::arg("gt_counts") = py::none(),
        "Largest-component boxes (B, T, 4) int64 at ascending thresholds and, with ground truth, "
        "the best IoU over all components (B, T) float64 (else None)");
}
