"""wsol_fast: a fast trainer for weakly supervised object localization (MobileNetV1-BAS
plus class-wise mean foreground maps and percentile-max normalization)."""

__version__ = "0.1.0"
