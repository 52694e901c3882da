"""Public ops with one reference and several fast paths, picked by one rule (``registry``)."""
from .training import (
    accumulate_class_sums,
    background_product,
    foreground_epilogue,
    guided_score,
    mean_map_l1,
)
from .evaluation import all_component_boxes, largest_component_boxes, normalize, percentile_max_normalize
