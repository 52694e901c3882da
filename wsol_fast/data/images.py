"""Reading one image file as the loaders see it: fully decoded 8-bit RGB, DALI's pixels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .records import ImageReadError

SIXTEEN_BIT_GREY = ("I;16", "I;16L", "I;16B")  # PIL modes of 16-bit grey PNG and TIFF files


def load_rgb(path: Path, index: int) -> Image.Image:
    """Open and fully decode an image as 8-bit RGB, with DALI's pixels: 16-bit grey (PNG, TIFF)
    becomes ``round(v / 257)``, not PIL's clipped ``convert``; alpha is dropped. (16-bit colour
    PNGs: PIL keeps the high byte, DALI rounds; they differ by at most one level.) Any failure
    raises ImageReadError naming path and index."""
    try:
        with Image.open(path) as image:
            if image.mode in SIXTEEN_BIT_GREY:
                grey = np.rint(np.asarray(image, dtype=np.float64) / 257).astype(np.uint8)
                return Image.fromarray(grey, "L").convert("RGB")
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"cannot read image {path} (dataset index {index}): {exc}") from exc
