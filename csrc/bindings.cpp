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

// Ground truth beside a batch of `batch` maps on `device`: float64 boxes (B, K, 4) and int64
// counts (B,) in [0, K], contiguous; both undefined when neither is given.
std::pair<at::Tensor, at::Tensor> checked_ground_truth(const std::optional<at::Tensor>& gt_boxes,
                                                       const std::optional<at::Tensor>& gt_counts,
                                                       int64_t batch, const at::Device& device,
                                                       const char* op) {
  TORCH_CHECK_VALUE(gt_boxes.has_value() == gt_counts.has_value(), op,
              ": gt_boxes and gt_counts go together");
  at::Tensor truth, truth_counts;
  if (gt_boxes.has_value()) {
    truth = gt_boxes->contiguous();
    truth_counts = gt_counts->contiguous();
    TORCH_CHECK_VALUE(truth.dim() == 3 && truth.size(0) == batch && truth.size(2) == 4 &&
                    truth.scalar_type() == at::kDouble && truth.device() == device,
                op, ": gt_boxes must be a float64 (B, K, 4) tensor beside the maps, got ",
                truth.scalar_type(), " of shape ", truth.sizes());
    TORCH_CHECK_VALUE(truth_counts.dim() == 1 && truth_counts.size(0) == batch &&
                    truth_counts.scalar_type() == at::kLong &&
                    truth_counts.device() == device,
                op, ": gt_counts must be an int64 (B,) tensor beside the maps");
    TORCH_CHECK_VALUE(truth_counts.numel() == 0 ||
                    at::all((truth_counts >= 0) & (truth_counts <= truth.size(1))).item<bool>(),
                op, ": gt_counts must lie in [0, K=", truth.size(1), "]");
  }
  return {truth, truth_counts};
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
  const auto [truth, truth_counts] = checked_ground_truth(gt_boxes, gt_counts, maps.size(0), maps.device(), op);
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

std::tuple<at::Tensor, at::Tensor> contour_sweep(const at::Tensor& levels, const at::Tensor& thresholds,
                                                 const std::optional<at::Tensor>& gt_boxes,
                                                 const std::optional<at::Tensor>& gt_counts) {
  constexpr const char* op = "contour_sweep";
  TORCH_CHECK_VALUE(levels.dim() == 3 && levels.scalar_type() == at::kByte && levels.device().is_cpu(), op,
                    ": levels must be a uint8 (B, H, W) CPU tensor, got ", levels.scalar_type(), " of shape ",
                    levels.sizes(), " on ", levels.device());
  TORCH_CHECK_VALUE(levels.size(1) > 0 && levels.size(2) > 0, op, ": empty maps of shape ", levels.sizes());
  TORCH_CHECK_VALUE((levels.size(1) + 2) * (levels.size(2) + 2) < INT32_MAX, op, ": maps of shape ",
                    levels.sizes(), " exceed 2^31 pixels");
  TORCH_CHECK_VALUE(thresholds.dim() == 2 && thresholds.size(0) == levels.size(0) && thresholds.size(1) > 0 &&
                        thresholds.scalar_type() == at::kLong && thresholds.device().is_cpu(),
                    op, ": thresholds must be an int64 (B, T) CPU tensor with T > 0, got ",
                    thresholds.scalar_type(), " of shape ", thresholds.sizes());
  const auto [truth, truth_counts] = checked_ground_truth(gt_boxes, gt_counts, levels.size(0), levels.device(), op);
  return contour_sweep_cpu(levels.contiguous(), thresholds.contiguous(), truth, truth_counts);
}

// Raises ValueError unless `mask` (named `name`) is a bool tensor of the maps' shape and device.
void check_pixel_mask(const at::Tensor& mask, const at::Tensor& maps, const char* name, const char* op) {
  TORCH_CHECK_VALUE(mask.scalar_type() == at::kBool && mask.sizes() == maps.sizes() &&
                        mask.device() == maps.device(),
                    op, ": ", name, " must be a bool tensor of the maps' shape ", maps.sizes(), " on ",
                    maps.device(), ", got ", mask.scalar_type(), " of shape ", mask.sizes(), " on ",
                    mask.device());
}

std::tuple<at::Tensor, at::Tensor> pxap_histograms(const at::Tensor& maps, const at::Tensor& masks,
                                                   const std::optional<at::Tensor>& ignore,
                                                   const at::Tensor& edges) {
  constexpr const char* op = "pxap_histograms";
  check_maps(maps, op);
  check_pixel_mask(masks, maps, "masks", op);
  if (ignore.has_value()) check_pixel_mask(*ignore, maps, "ignore", op);
  TORCH_CHECK_VALUE(edges.dim() == 1 && edges.numel() >= 2 && edges.numel() < INT32_MAX &&
                        edges.scalar_type() == at::kDouble && edges.device() == maps.device(),
                    op, ": edges must be a 1-D float64 tensor of at least 2 values on ", maps.device(),
                    ", got ", edges.scalar_type(), " of shape ", edges.sizes(), " on ", edges.device());
  TORCH_CHECK_VALUE(at::all(edges.diff() >= 0).item<bool>(), op, ": edges must not descend nor be NaN");
  const at::Tensor values = maps.contiguous();
  const at::Tensor foreground = masks.contiguous();
  const at::Tensor ignored = ignore.has_value() ? ignore->contiguous() : at::Tensor();
  const at::Tensor levels = edges.contiguous();
  if (maps.is_cuda()) {
#ifdef WITH_CUDA
    return pxap_histograms_cuda(values, foreground, ignored, levels);
#else
    require_cuda_build(op);
#endif
  }
  return pxap_histograms_cpu(values, foreground, ignored, levels);
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
  m.def("contour_sweep", &wsol::contour_sweep, py::arg("levels"), py::arg("thresholds"),
        py::arg("gt_boxes") = py::none(), py::arg("gt_counts") = py::none(),
        "wsolevaluation's contour rule on uint8 maps at integer thresholds (B, T): the largest "
        "contour's box (B, T, 4) int64 and, with ground truth, the best IoU over every contour "
        "(B, T) float64 (else None)");
  m.def("threshold_sweep", &wsol::threshold_sweep, py::arg("maps"), py::arg("thresholds"),
        py::arg("empty_full"), py::arg("gt_boxes") = py::none(), py::arg("gt_counts") = py::none(),
        "Largest-component boxes (B, T, 4) int64 at ascending thresholds and, with ground truth, "
        "the best IoU over all components (B, T) float64 (else None)");
  m.def("pxap_histograms", &wsol::pxap_histograms, py::arg("maps"), py::arg("masks"),
        py::arg("ignore"), py::arg("edges"),
        "numpy.histogram of each map's values at mask pixels and at the other pixels not ignored, "
        "over ascending float64 edges (E,): ((B, E - 1), (B, E - 1)) int64");
}
