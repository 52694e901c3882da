"""Drawing primitives: heat-map colours and overlays, boxes, captions, letterboxed tiles and
captioned grids, on PIL images. Colors: predicted boxes red, ground-truth boxes green. Boxes are
``x0, y0, x1, y1`` with exclusive maxima (the convention of ``wsol_fast.ops``). Imports nothing
from the package.
"""

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

PRED_COLOR = (230, 30, 30)
GT_COLOR = (30, 200, 60)
BACKGROUND = (255, 255, 255)
TEXT_COLOR = (20, 20, 20)


def _jet_lut() -> np.ndarray:
    """(256, 3) uint8 jet colormap: blue (0) -> cyan -> yellow -> red (1)."""
    x = np.linspace(0.0, 1.0, 256)
    channels = [np.clip(1.5 - np.abs(4.0 * x - centre), 0.0, 1.0) for centre in (3.0, 2.0, 1.0)]
    return np.round(np.stack(channels, axis=1) * 255).astype(np.uint8)


JET = _jet_lut()


def colorize(values: np.ndarray) -> np.ndarray:
    """Jet colors of ``values`` (...,) float, clipped to [0, 1] -> (..., 3) uint8."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0)
    return JET[np.round(np.clip(values, 0.0, 1.0) * 255).astype(np.intp)]


def overlay_heatmap(image: Image.Image, heat, alpha: float = 0.5) -> Image.Image:
    """``image`` blended with the jet colors of ``heat`` ((h, w) float in [0, 1], numpy or torch),
    resized bilinearly to the image; ``alpha`` is the heat map's weight. Returns a new RGB image."""
    if isinstance(heat, torch.Tensor):
        heat = heat.detach().float().cpu().numpy()
    heat = np.asarray(heat, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"heat map: expected (h, w), got shape {heat.shape}")
    resized = np.asarray(Image.fromarray(heat).resize(image.size, Image.BILINEAR))
    colors = Image.fromarray(colorize(resized))
    return Image.blend(image.convert("RGB"), colors, alpha)


def font(size: float) -> ImageFont.ImageFont:
    """Pillow's built-in font at ``size`` pixels (at least 8)."""
    return ImageFont.load_default(size=max(8, int(size)))


def draw_box(image: Image.Image, box, color, scale: float = 1.0, offset=(0, 0), width: int | None = None) -> None:
    """Draw ``box`` (x0, y0, x1, y1, exclusive maxima) scaled by ``scale`` then shifted by
    ``offset`` on ``image`` in place; line width defaults to ~1/150 of the image's longer side."""
    x0, y0, x1, y1 = (float(v) * scale for v in box)
    dx, dy = offset
    width = width or max(2, round(max(image.size) / 150))
    right, bottom = max(x0, x1 - 1), max(y0, y1 - 1)
    ImageDraw.Draw(image).rectangle([x0 + dx, y0 + dy, right + dx, bottom + dy], outline=color, width=width)


def draw_caption(image: Image.Image, text: str) -> None:
    """Write ``text`` in the top-left corner of ``image`` (in place), white on a dark band, in a
    font sized to the image (cut with an ellipsis where it is still too long)."""
    draw = ImageDraw.Draw(image)
    caption_font = font(max(8, round(max(image.size) / 32)))
    text = fitted_text(draw, text, image.size[0] - 8, caption_font)
    _, _, right, bottom = draw.textbbox((4, 2), text, font=caption_font)
    draw.rectangle([0, 0, right + 4, bottom + 3], fill=(0, 0, 0))
    draw.text((4, 2), text, fill=(255, 255, 255), font=caption_font)


def fitted_text(draw: ImageDraw.ImageDraw, text: str, width: int, text_font) -> str:
    """``text`` cut (with an ellipsis) to fit ``width`` pixels."""
    if draw.textlength(text, font=text_font) <= width:
        return text
    while text and draw.textlength(text + "…", font=text_font) > width:
        text = text[:-1]
    return text + "…"


def letterbox_scale(width: int, height: int, tile: int) -> tuple[float, tuple[int, int], tuple[int, int]]:
    """Scale, content size and offset that fit a (width, height) image centred in a tile x tile square."""
    scale = tile / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return scale, size, ((tile - size[0]) // 2, (tile - size[1]) // 2)


def render_tile(image: Image.Image, tile: int, heat=None, pred_box=None, gt_boxes=()) -> Image.Image:
    """One grid cell: ``image`` letterboxed in a tile x tile square (white margins), optionally
    with ``heat`` blended on it, ``pred_box`` (red) and ``gt_boxes`` (green), all in the
    original image's pixels."""
    scale, size, offset = letterbox_scale(*image.size, tile)
    content = image.convert("RGB").resize(size, Image.BILINEAR)
    if heat is not None:
        content = overlay_heatmap(content, heat)
    canvas = Image.new("RGB", (tile, tile), BACKGROUND)
    canvas.paste(content, offset)
    for box in gt_boxes:
        draw_box(canvas, box, GT_COLOR, scale, offset)
    if pred_box is not None:
        draw_box(canvas, pred_box, PRED_COLOR, scale, offset)
    return canvas


def compose_grid(cells: list[list[Image.Image]], captions: list[list[str]], titles: list[str]) -> Image.Image:
    """Rows of equal square tiles with a caption under each and a title over each column."""
    tile = cells[0][0].size[0]
    gap, title_height, caption_height = 6, max(18, tile // 8), max(14, tile // 10)
    title_font, caption_font = font(title_height * 0.7), font(caption_height * 0.75)
    columns = len(titles)
    row_height = tile + caption_height + gap
    grid = Image.new("RGB", (columns * (tile + gap) + gap, title_height + gap + len(cells) * row_height), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    for column, title in enumerate(titles):
        x = gap + column * (tile + gap)
        draw.text((x, 2), fitted_text(draw, title, tile, title_font), fill=TEXT_COLOR, font=title_font)
    for row, (row_cells, row_captions) in enumerate(zip(cells, captions)):
        y = title_height + gap + row * row_height
        for column, (cell, caption) in enumerate(zip(row_cells, row_captions)):
            x = gap + column * (tile + gap)
            grid.paste(cell, (x, y))
            draw.text((x, y + tile + 1), fitted_text(draw, caption, tile, caption_font), fill=TEXT_COLOR,
                      font=caption_font)
    return grid
