"""A synthetic WSOL dataset written as real JPEG files in the CUB-200-2011 layout.

Design (what makes it a real weakly supervised localization problem):

- **Object = large body + small part.** The body carries a texture whose hue is drawn from a
  class-dependent distribution (``body_hue_overlap`` is its standard deviation in units of the
  hue spacing between classes), so the whole body is class evidence, as a bird's whole body is.
  On ``part_probability`` of the images a small disc (``part_area_fraction`` of the body area)
  with a class-unique two-colour pattern sits inside the body near a class-specific end of it:
  the most discriminative spot, which a plain CAM's peak locks onto, so its box is much smaller
  than the object's; BAS, which must remove *all* class evidence from the background, covers
  the body.
- **Shape prior.** Each class has its own shape (ellipse, rounded rectangle, rounded triangle,
  egg, two-blob "bird", rounded diamond; hue-neighbouring pairs of classes share a shape family),
  aspect ratio, size and tilt (sizes and aspects are spread evenly over their ranges, one per
  class); objects sit near the image centre with jitter and are mirrored end to end at random.
  Class-mean foreground maps therefore carry a real shape prior.
- **Clutter.** Backgrounds are colour gradients with smooth shading and pixel noise.
  Optional distractor shapes (``distractor_count_range``; smaller, generic, possibly cut by the
  border) carry body-like textures of random classes, desaturated to
  ``distractor_saturation`` of their colour, and never a part. They are off by default: any
  textured distractor is evidence outside the object that BAS's background-suppression
  objective learns to mask, so its maps drift onto them. Measured with the demo's recipe at
  128 px (CAM / BAS early GT-known, one run each): no distractors 35.0 / 70.0; 1-3 grey
  distractors (saturation 0.1) 63.0 / 55.5; 1-4 distractors coloured like bodies 59.5 / 52.5.
- **Size.** 224 px by default, the paper's input: at 128 px the receptive field of the
  features BAS masks (139 px) covers the whole image, every feature cell carries the class,
  and BAS's maps often settle beside the object (``launch/probe_background.py`` shows it).
- **Exact boxes.** Masks are binary; the box written to ``bounding_boxes.txt`` is the bounding
  box of the whole object mask (body and part), ``x1``/``y1`` exclusive.

Everything is deterministic from ``SyntheticSpec`` (NumPy generators seeded from
``(seed, class, sample)``; PIL for JPEG). ``generate_synthetic`` builds the dataset in a
temporary sibling directory, writes the ``synthetic_spec.json`` marker last and renames the
directory into place, so a data root either holds a finished dataset with its marker or
nothing of ours.
"""
from __future__ import annotations

import colorsys
import contextlib
import functools
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, fields
from itertools import permutations
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import DataConfig

MARKER_NAME = "synthetic_spec.json"
GENERATOR_VERSION = 2  # 2: optional part, desaturatable distractors (off by default)

CLASS_SHAPES = ("ellipse", "rounded_rectangle", "rounded_triangle", "egg", "two_blob", "diamond")
DISTRACTOR_SHAPES = ("ellipse", "rectangle", "diamond")
PART_LAYOUTS = ("ring", "vertical_halves", "horizontal_halves", "quadrants")
PART_PALETTE = np.array(
    [
        [1.0, 0.0, 0.0],
        [0.0, 0.85, 0.0],
        [0.0, 0.25, 1.0],
        [1.0, 0.9, 0.0],
        [1.0, 0.0, 1.0],
        [0.0, 1.0, 1.0],
        [1.0, 1.0, 1.0],
        [0.0, 0.0, 0.0],
    ],
    dtype=np.float32,
)
PART_CODES = tuple(
    (layout, first, second)
    for layout in range(len(PART_LAYOUTS))
    for first, second in permutations(range(len(PART_PALETTE)), 2)
)


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate. The fields after ``seed`` are the difficulty knobs.

    - ``object_scale_range``: range of class-mean object long sides, as a fraction of the image side.
    - ``part_area_fraction``: area of the class-unique part relative to the body area.
    - ``body_hue_overlap``: std of a body's hue around its class hue, in class-spacing units
      (1.0: neighbouring classes overlap heavily; 0: bodies are fully class-informative).
    - ``part_probability``: probability that an object carries its class-unique part.
    - ``distractor_count_range``: inclusive (min, max) number of distractor shapes per image.
    - ``distractor_saturation``: colour kept by distractor textures (0: grey, 1: like a body).
    - ``jpeg_quality``: JPEG quality of the written images (4:4:4 chroma).
    """

    num_classes: int = DataConfig.synthetic_classes
    train_per_class: int = DataConfig.synthetic_train_per_class
    test_per_class: int = DataConfig.synthetic_test_per_class
    image_size: int = DataConfig.synthetic_image_size
    seed: int = DataConfig.synthetic_seed
    object_scale_range: tuple[float, float] = (0.45, 0.75)
    part_area_fraction: float = 0.03
    body_hue_overlap: float = 0.25
    part_probability: float = 0.5
    distractor_count_range: tuple[int, int] = (0, 0)
    distractor_saturation: float = 0.1
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        object.__setattr__(self, "object_scale_range", tuple(float(v) for v in self.object_scale_range))
        object.__setattr__(self, "distractor_count_range", tuple(int(v) for v in self.distractor_count_range))
        if not 1 <= self.num_classes <= len(PART_CODES):
            raise ValueError(f"num_classes must be in 1..{len(PART_CODES)}, got {self.num_classes}")
        if self.train_per_class < 1 or self.test_per_class < 1:
            raise ValueError("train_per_class and test_per_class must be >= 1")
        if self.image_size < 32:
            raise ValueError(f"image_size must be >= 32, got {self.image_size}")
        low, high = self.object_scale_range
        if not 0.1 <= low <= high <= 0.9:
            raise ValueError(f"object_scale_range must satisfy 0.1 <= low <= high <= 0.9, got {self.object_scale_range}")
        if not 0.0 < self.part_area_fraction <= 0.25:
            raise ValueError(f"part_area_fraction must be in (0, 0.25], got {self.part_area_fraction}")
        if not 0.0 <= self.part_probability <= 1.0:
            raise ValueError(f"part_probability must be in [0, 1], got {self.part_probability}")
        if not 0.0 <= self.distractor_saturation <= 1.0:
            raise ValueError(f"distractor_saturation must be in [0, 1], got {self.distractor_saturation}")
        if self.body_hue_overlap < 0:
            raise ValueError(f"body_hue_overlap must be >= 0, got {self.body_hue_overlap}")
        low, high = self.distractor_count_range
        if not 0 <= low <= high:
            raise ValueError(f"distractor_count_range must satisfy 0 <= min <= max, got {self.distractor_count_range}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")

    @property
    def images_per_class(self) -> int:
        return self.train_per_class + self.test_per_class


@dataclass(frozen=True)
class ClassStyle:
    """The fixed look of one class: body shape, size, tilt, hue and its part's code."""

    name: str
    shape: str
    aspect: float  # long / short half-axis of the body
    scale: float  # long side of the body / image side
    tilt: float  # radians
    part_direction: float  # radians, in the body's own frame (0 = towards the long-axis end)
    hue: float  # centre of the body hue distribution, in [0, 1)
    part_code: tuple[int, int, int]  # (layout, first colour, second colour)


@dataclass(frozen=True)
class RenderedSample:
    """One rendered image with its ground truth.

    ``image`` (S, S, 3) uint8; ``object_mask`` and ``part_mask`` (S, S) bool (the part lies in the
    object; empty when the object has none); ``box`` (4,) float32 ``x0, y0, x1, y1`` = bounding box of ``object_mask``, exclusive max.
    """

    image: np.ndarray
    object_mask: np.ndarray
    part_mask: np.ndarray
    box: np.ndarray


@functools.lru_cache(maxsize=8)
def class_styles(spec: SyntheticSpec) -> tuple[ClassStyle, ...]:
    """The style of every class, a deterministic function of ``spec.seed`` and the class index."""
    rng = np.random.default_rng([spec.seed, 1])
    code_order = rng.permutation(len(PART_CODES))
    # Stratified sizes and aspects: every class gets its own, spread over the whole range.
    strata = (np.arange(spec.num_classes) + 0.5) / spec.num_classes
    low, high = spec.object_scale_range
    scales = low + (high - low) * rng.permutation(strata)
    aspects = 1.0 + rng.permutation(strata)  # long / short in [1, 2]
    styles = []
    for c in range(spec.num_classes):
        class_rng = np.random.default_rng([spec.seed, 2, c])
        shape = CLASS_SHAPES[(c // 2) % len(CLASS_SHAPES)]
        styles.append(
            ClassStyle(
                name=f"{c + 1:03d}.class_{c + 1:03d}_{shape}",
                shape=shape,
                aspect=float(aspects[c]),
                scale=float(scales[c]),
                tilt=math.radians(class_rng.uniform(-35.0, 35.0)),
                part_direction=class_rng.uniform(0.0, 2.0 * math.pi),
                hue=c / spec.num_classes,
                part_code=PART_CODES[code_order[c]],
            )
        )
    return tuple(styles)


def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of a unit-size shape in its own normalized frame (u along the long axis)."""
    if shape == "ellipse":
        return u * u + v * v <= 1.0
    if shape == "rectangle":
        return np.maximum(np.abs(u), np.abs(v)) <= 1.0
    if shape == "rounded_rectangle":
        return u**4 + v**4 <= 1.0
    if shape == "diamond":
        return np.abs(u) ** 1.3 + np.abs(v) ** 1.3 <= 1.0
    if shape == "rounded_triangle":
        return np.hypot(u, v) <= 0.85 + 0.15 * np.cos(3.0 * np.arctan2(v, u))
    if shape == "egg":
        return u * u + (v / (0.75 + 0.25 * u)) ** 2 <= 1.0
    if shape == "two_blob":
        body = ((u + 0.25) / 0.75) ** 2 + v * v <= 1.0
        head = ((u - 0.68) / 0.32) ** 2 + ((v + 0.35) / 0.5) ** 2 <= 1.0
        return body | head
    raise ValueError(f"unknown shape {shape!r}")


def _shape_frame(x, y, centre, half_long, aspect, tilt, mirror):
    """Normalized frame ``(u, v)``, (S, S) float32 each, of a shape centred at ``centre`` (pixels)
    with the given long half-axis (pixels), aspect, tilt (radians); ``mirror`` reverses ``u``
    (the shape is mirrored end to end, keeping its tilt)."""
    dx = x - float(centre[0])
    dy = y - float(centre[1])
    cos, sin = math.cos(tilt), math.sin(tilt)
    u = (dx * cos + dy * sin) / (-half_long if mirror else half_long)
    v = (dy * cos - dx * sin) / (half_long / aspect)
    return u, v


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """(size, size) float32 in about [0, 1]: a ``cells``×``cells`` random grid upsampled bicubically."""
    grid = rng.random((cells, cells), dtype=np.float32)
    return np.asarray(Image.fromarray(grid).resize((size, size), Image.Resampling.BICUBIC))


def _hsv(hue: float, saturation: float, value: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, value), dtype=np.float32)


def _texture(rng: np.random.Generator, hue: float, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(P, 3) float32 body-like texture around ``hue`` (stripes, spots or mottling) for the P
    pixels where ``mask`` (S, S) is set; ``x``, ``y`` are the (S, S) pixel-centre coordinates."""
    size = mask.shape[0]
    base = _hsv(hue, rng.uniform(0.35, 0.7), rng.uniform(0.45, 0.85))
    second = _hsv(hue + rng.uniform(-0.05, 0.05), rng.uniform(0.2, 0.8), rng.uniform(0.25, 0.95))
    kind = rng.integers(3)
    if kind == 0:
        angle = rng.uniform(0.0, math.pi)
        period = rng.uniform(0.04, 0.12) * size
        phase = (x[mask] * math.cos(angle) + y[mask] * math.sin(angle)) * (2.0 * math.pi / period)
        pattern = 0.5 + 0.5 * np.sin(phase + rng.uniform(0.0, 2.0 * math.pi))
    elif kind == 1:
        pattern = (_smooth_noise(rng, size, max(4, size // 6))[mask] > 0.6).astype(np.float32)
    else:
        pattern = _smooth_noise(rng, size, max(3, size // 16))[mask]
    texture = base + pattern[:, None] * (second - base)
    return texture + 0.03 * rng.standard_normal(texture.shape, dtype=np.float32)


def _background(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(S, S, 3) float32 cluttered background: colour gradient, smooth shading and pixel noise."""
    size = x.shape[0]
    start = _hsv(rng.random(), rng.uniform(0.05, 0.5), rng.uniform(0.3, 0.9))
    end = _hsv(rng.random(), rng.uniform(0.05, 0.5), rng.uniform(0.3, 0.9))
    angle = rng.uniform(0.0, 2.0 * math.pi)
    ramp = x * math.cos(angle) + y * math.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    image = start + ramp[..., None] * (end - start)
    image = image * (0.75 + 0.5 * _smooth_noise(rng, size, 4))[..., None]
    return image + 0.04 * rng.standard_normal(image.shape, dtype=np.float32)


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion of ``mask`` by a (2r+1)×(2r+1) square; outside the image counts as empty."""
    padded = np.pad(mask, radius, constant_values=False)
    window = 2 * radius + 1
    rows = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0).all(axis=-1)
    return np.lib.stride_tricks.sliding_window_view(rows, window, axis=1).all(axis=-1)


def _part_colours(code: tuple[int, int, int], dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    """(P,) bool, True where the part pixel at offset (dx, dy) takes the first colour."""
    layout = PART_LAYOUTS[code[0]]
    if layout == "ring":
        return dx * dx + dy * dy <= (0.5 * radius) ** 2
    if layout == "vertical_halves":
        return dx < 0
    if layout == "horizontal_halves":
        return dy < 0
    return (dx < 0) ^ (dy < 0)


def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``x, y`` as (S, S) float32 arrays."""
    centres = np.arange(size, dtype=np.float32) + 0.5
    return np.meshgrid(centres, centres)


def render_sample(spec: SyntheticSpec, class_index: int, sample_index: int) -> RenderedSample:
    """Render sample ``sample_index`` of class ``class_index`` (deterministic from the spec's seed)."""
    if not 0 <= class_index < spec.num_classes:
        raise ValueError(f"class_index must be in [0, {spec.num_classes}), got {class_index}")
    style = class_styles(spec)[class_index]
    rng = np.random.default_rng([spec.seed, 3, class_index, sample_index])
    size = spec.image_size
    x, y = _pixel_grid(size)
    hue_spread = spec.body_hue_overlap / spec.num_classes

    image = _background(rng, x, y)
    for _ in range(rng.integers(spec.distractor_count_range[0], spec.distractor_count_range[1] + 1)):
        centre = rng.uniform(-0.05 * size, 1.05 * size, 2)
        u, v = _shape_frame(
            x, y, centre, rng.uniform(0.06, 0.16) * size, rng.uniform(1.0, 2.5), rng.uniform(0.0, math.pi), False
        )
        mask = _inside(DISTRACTOR_SHAPES[rng.integers(len(DISTRACTOR_SHAPES))], u, v)
        hue = rng.integers(spec.num_classes) / spec.num_classes + rng.normal(0.0, hue_spread)
        texture = _texture(rng, hue, x, y, mask)
        grey = texture.mean(axis=1, keepdims=True)
        image[mask] = grey + spec.distractor_saturation * (texture - grey)

    half_long = 0.5 * size * min(style.scale * rng.uniform(0.9, 1.1), 0.9)
    reach = min(1.2 * half_long, 0.5 * size)
    jitter = min(0.05 * size, 0.5 * size - reach)
    centre = 0.5 * size + rng.uniform(-jitter, jitter, 2)
    tilt = style.tilt + math.radians(rng.normal(0.0, 8.0))
    u, v = _shape_frame(x, y, centre, half_long, style.aspect, tilt, mirror=bool(rng.random() < 0.5))
    body = _inside(style.shape, u, v)
    body_texture = _texture(rng, style.hue + rng.normal(0.0, hue_spread), x, y, body)
    shading = 1.05 - 0.2 * np.minimum(u[body] ** 2 + v[body] ** 2, 1.0)
    image[body] = body_texture * shading[:, None]

    has_part = rng.random() < spec.part_probability
    radius = max(1.5, math.sqrt(spec.part_area_fraction * float(body.sum()) / math.pi))
    candidates = _erode(body, int(np.ceil(radius)) + 1)
    if not candidates.any():
        candidates = body
    towards_end = u * math.cos(style.part_direction) + v * math.sin(style.part_direction)
    flat = int(np.argmax(np.where(candidates, towards_end, -np.inf)))
    part_x, part_y = x.flat[flat], y.flat[flat]
    part = ((x - part_x) ** 2 + (y - part_y) ** 2 <= radius * radius) & has_part
    first = _part_colours(style.part_code, x[part] - part_x, y[part] - part_y, radius)
    image[part] = np.where(first[:, None], PART_PALETTE[style.part_code[1]], PART_PALETTE[style.part_code[2]])

    object_mask = body | part
    rows = np.flatnonzero(object_mask.any(axis=1))
    cols = np.flatnonzero(object_mask.any(axis=0))
    box = np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float32)
    pixels = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    return RenderedSample(image=pixels, object_mask=object_mask, part_mask=part, box=box)


def _marker_payload(spec: SyntheticSpec) -> dict:
    """The marker's JSON content (after a JSON round trip, so it compares equal to a loaded one)."""
    return json.loads(json.dumps({"generator_version": GENERATOR_VERSION, "spec": asdict(spec)}))


def _check_marker(marker: Path, spec: SyntheticSpec) -> None:
    """Raise ValueError if the marker at ``marker`` was written for another spec or generator."""
    try:
        found = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{marker}: unreadable synthetic dataset marker: {exc}") from exc
    expected = _marker_payload(spec)
    if found == expected:
        return
    if not isinstance(found, dict) or not isinstance(found.get("spec"), dict):
        differences = ["malformed marker"]
    elif found.get("generator_version") != GENERATOR_VERSION:
        differences = [f"generator_version {found.get('generator_version')!r} != {GENERATOR_VERSION}"]
    else:
        differences = [
            f"{f.name}: existing {found['spec'].get(f.name)!r}, requested {expected['spec'][f.name]!r}"
            for f in fields(SyntheticSpec)
            if found["spec"].get(f.name) != expected["spec"][f.name]
        ]
    raise ValueError(
        f"synthetic dataset at {marker.parent} was generated with a different spec "
        f"({'; '.join(differences)}); delete that directory or choose another data root"
    )


def _write_dataset(directory: Path, spec: SyntheticSpec) -> None:
    """Write images and the five CUB annotation files (not the marker) into ``directory``."""
    styles = class_styles(spec)
    images, labels, split, boxes = [], [], [], []
    image_id = 0
    for class_index, style in enumerate(styles):
        class_dir = directory / "images" / style.name
        class_dir.mkdir(parents=True)
        for sample_index in range(spec.images_per_class):
            image_id += 1
            sample = render_sample(spec, class_index, sample_index)
            filename = f"{style.name.split('.', 1)[1]}_{sample_index:04d}.jpg"
            Image.fromarray(sample.image).save(
                class_dir / filename, format="JPEG", quality=spec.jpeg_quality, subsampling=0
            )
            x0, y0, x1, y1 = (float(v) for v in sample.box)
            images.append(f"{image_id} {style.name}/{filename}")
            labels.append(f"{image_id} {class_index + 1}")
            split.append(f"{image_id} {int(sample_index < spec.train_per_class)}")
            boxes.append(f"{image_id} {x0:.1f} {y0:.1f} {x1 - x0:.1f} {y1 - y0:.1f}")
    tables = {
        "classes.txt": [f"{c + 1} {style.name}" for c, style in enumerate(styles)],
        "images.txt": images,
        "image_class_labels.txt": labels,
        "train_test_split.txt": split,
        "bounding_boxes.txt": boxes,
    }
    for name, lines in tables.items():
        (directory / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def is_stale(root: str | Path, spec: SyntheticSpec = SyntheticSpec()) -> bool:
    """True if ``root`` holds a finished synthetic dataset made for another spec or generator
    version (``generate_synthetic`` would refuse it)."""
    marker = Path(root) / MARKER_NAME
    if not marker.is_file():
        return False
    try:
        _check_marker(marker, spec)
    except ValueError:
        return True
    return False


def _current_umask() -> int:
    """This process's file-mode creation mask."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def generate_synthetic(root: str | Path, spec: SyntheticSpec = SyntheticSpec()) -> Path:
    """Generate the dataset described by ``spec`` at ``root`` (CUB layout) and return ``root``.

    Idempotent: if ``root`` already holds a dataset whose marker matches ``spec``, nothing is
    written; a marker for another spec raises ValueError; a non-empty ``root`` without a marker
    raises FileExistsError (never mixes two datasets). Safe against interruption and concurrent
    callers: the data is built in a temporary sibling directory, marker last, then renamed.
    """
    root = Path(root).resolve()
    marker = root / MARKER_NAME
    if marker.is_file():
        _check_marker(marker, spec)
        return root
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(
            f"{root} exists and is not an empty directory, but has no {MARKER_NAME}: it is not a "
            "finished synthetic dataset; delete it or choose another data root"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    staging.chmod(0o777 & ~_current_umask())  # mkdtemp makes it 0700: others could not read the data
    try:
        _write_dataset(staging, spec)
        (staging / MARKER_NAME).write_text(json.dumps(_marker_payload(spec), indent=2) + "\n", encoding="utf-8")
        try:
            with contextlib.suppress(FileNotFoundError):
                root.rmdir()
            os.rename(staging, root)
        except OSError:
            if not marker.is_file():
                raise
            _check_marker(marker, spec)  # another process finished the same dataset first
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root
