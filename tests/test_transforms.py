"""Image transforms (shapes, normalization, seeded randomness) and box transforms (hand values)."""
import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

from wsol_fast.config import scaled_resize
from wsol_fast.data.augmentation import bas_crop_params
from wsol_fast.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    bas_boxes,
    eval_transform,
    normalize_pixels,
    resize_boxes,
    resize_only_transform,
    train_transform,
)


def random_image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def normalized_resize(image: Image.Image, side: int) -> torch.Tensor:
    """Reference: (side, side) bilinear antialiased resize, then ToTensor and ImageNet normalize."""
    resized = TF.resize(image, [side, side], interpolation=InterpolationMode.BILINEAR, antialias=True)
    return TF.normalize(TF.to_tensor(resized), IMAGENET_MEAN, IMAGENET_STD)


def drawn(seed: int, transform) -> tuple[int, int, bool]:
    """``(top, left, flip)`` of sample 0 for ``seed``, as the loaders draw them for ``transform``."""
    top, left, flip = bas_crop_params(seed, 0, np.array([0]), transform.image_size, transform.resize)
    return int(top[0]), int(left[0]), bool(flip[0])


@pytest.mark.parametrize("channels_last", [False, True])
def test_normalize_pixels_is_torchvisions_to_tensor_and_normalize_bit_for_bit(channels_last):
    generator = torch.Generator().manual_seed(3)
    pixels = torch.randint(0, 256, (5, 3, 17, 23), dtype=torch.uint8, generator=generator)
    if channels_last:
        pixels = pixels.contiguous(memory_format=torch.channels_last)
    out = normalize_pixels(pixels)
    images = [Image.fromarray(p.permute(1, 2, 0).numpy()) for p in pixels]
    expected = torch.stack([TF.normalize(TF.to_tensor(image), IMAGENET_MEAN, IMAGENET_STD) for image in images])
    assert out.dtype == torch.float32 and torch.equal(out, expected)
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_transforms_give_pixels_and_their_normalization():
    image = random_image(61, 47)
    train, evaluate = train_transform(32, 37), eval_transform(32, 37)
    for transform, args in ((train, (3, 4, True)), (evaluate, ())):
        pixels = transform.pixels(image, *args)
        assert pixels.dtype == torch.uint8 and pixels.shape == (3, 32, 32)
        assert torch.equal(transform(image, *args), normalize_pixels(pixels))


def test_scaled_resize_keeps_bas_ratio():
    assert scaled_resize(224) == 256
    assert scaled_resize(96) == 110
    assert scaled_resize(128) == 146


@pytest.mark.parametrize("image_size, resize", [(96, 110), (33, 40), (20, 29)])
def test_train_output_is_a_crop_of_the_resized_image_flipped_or_not(image_size, resize):
    image = random_image(71, 53)
    full = normalized_resize(image, resize)
    transform = train_transform(image_size, resize)
    seen_offsets, seen_flips = set(), set()
    for seed in range(12):
        out = transform(image, *drawn(seed, transform))
        assert out.shape == (3, image_size, image_size) and out.dtype == torch.float32
        matches = [
            (top, left, flip)
            for top in range(resize - image_size + 1)
            for left in range(resize - image_size + 1)
            for flip in (False, True)
            if torch.equal(out, _window(full, top, left, image_size, flip))
        ]
        assert len(matches) >= 1
        seen_offsets.add(matches[0][:2])
        seen_flips.add(matches[0][2])
    assert len(seen_offsets) > 1 and seen_flips == {False, True}


def _window(full: torch.Tensor, top: int, left: int, size: int, flip: bool) -> torch.Tensor:
    window = full[:, top : top + size, left : left + size]
    return window.flip(-1) if flip else window


def test_train_flip_happens_for_some_seeds_only():
    image = random_image(40, 40, seed=3)
    base = normalized_resize(image, 32)
    transform = train_transform(32, 32)  # no crop freedom: output is base or its mirror
    flipped = [torch.equal(transform(image, *drawn(s, transform)), base.flip(-1)) for s in range(20)]
    unflipped = [torch.equal(transform(image, *drawn(s, transform)), base) for s in range(20)]
    assert all(f != u for f, u in zip(flipped, unflipped))
    assert 3 <= sum(flipped) <= 17


def test_train_is_a_function_of_the_drawn_parameters():
    image = random_image(90, 64, seed=1)
    transform = train_transform(48, 56)
    outputs = {transform(image, *drawn(s, transform)).sum().item() for s in range(6)}
    assert len(outputs) > 1
    assert torch.equal(transform(image, 8, 8, True), transform(image, 8, 8, True))
    with pytest.raises(ValueError, match="leaves the 56-px resized image"):
        transform(image, 9, 0, False)


def test_normalization_of_a_constant_image():
    colour = (200, 13, 97)
    image = Image.new("RGB", (50, 30), colour)
    expected = (torch.tensor(colour) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    for out in (eval_transform(24, 28)(image), train_transform(24, 28)(image, 2, 3, True)):
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, expected[:, None, None].expand(3, 24, 24), atol=1e-6, rtol=0)


@pytest.mark.parametrize("image_size, resize", [(224, 256), (96, 110), (31, 40)])
def test_eval_is_the_center_crop(image_size, resize):
    image = random_image(77, 41, seed=2)
    full = normalized_resize(image, resize)
    top = int(round((resize - image_size) / 2.0))
    out = eval_transform(image_size, resize)(image)
    assert out.shape == (3, image_size, image_size) and out.dtype == torch.float32
    torch.testing.assert_close(out, full[:, top : top + image_size, top : top + image_size], atol=0, rtol=0)


def test_resize_only_has_no_crop():
    image = random_image(63, 80, seed=4)
    torch.testing.assert_close(resize_only_transform(40)(image), normalized_resize(image, 40), atol=0, rtol=0)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="image_size <= resize"):
        train_transform(224, 200)
    with pytest.raises(ValueError, match="image_size <= resize"):
        eval_transform(0, 10)


def test_bas_boxes_hand_computed():
    boxes = np.array([[50, 40, 450, 380], [10, 300, 499, 399]], dtype=np.float32)
    # x: clip(x * 256 / 500, 16, 240) - 16; y: clip(y * 256 / 400, 16, 240) - 16
    expected = np.array([[9.6, 9.6, 214.4, 224.0], [0.0, 176.0, 224.0, 224.0]], dtype=np.float32)
    out = bas_boxes(boxes, 500, 400)
    assert out.dtype == np.float32 and out.shape == (2, 4)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-4)


def test_bas_boxes_other_sizes_hand_computed():
    # resize 110, crop 96: offset 7; W = 128, H = 64
    boxes = np.array([[0.0, 32.0, 128.0, 50.0]])
    expected = [[0.0, 48.0, 96.0, 78.9375]]  # 0 -> 7; 55 -> 48; 110 -> 103; 85.9375 -> 78.9375
    np.testing.assert_allclose(bas_boxes(boxes, 128, 64, resize=110, crop=96), expected, rtol=0, atol=1e-5)


def test_bas_boxes_follow_the_image_crop_for_odd_margins():
    # resize 40, crop 31: the center crop starts at pixel 4 (torchvision's rounding of 4.5)
    boxes = np.array([[0.0, 10.0, 20.0, 30.0]])
    expected = [[0.0, 6.0, 16.0, 26.0]]  # x * 40 / 40 clipped to [4, 35], minus 4
    np.testing.assert_allclose(bas_boxes(boxes, 40, 40, resize=40, crop=31), expected, rtol=0, atol=0)


def test_bas_boxes_match_the_scalar_rule_on_random_boxes():
    rng = np.random.default_rng(0)
    width, height = 371, 229
    corners = rng.uniform(-20, 400, (50, 4))
    out = bas_boxes(corners, width, height, resize=146, crop=128)
    for box, got in zip(corners, out):
        want = [
            min(max(v * 146 / side, 9.0), 137.0) - 9.0
            for v, side in zip(box, (width, height, width, height))
        ]
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-4)


def test_resize_boxes_hand_computed_and_match_python_int():
    out = resize_boxes(np.array([[1, 2, 499, 332]]), 500, 333)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0, 1, 223, 223]])
    rng = np.random.default_rng(1)
    width, height = 641, 479
    corners = rng.uniform(0, 640, (40, 4))
    out = resize_boxes(corners, width, height, size=96)
    for box, got in zip(corners, out):
        want = [int(v * 96 / side) for v, side in zip(box, (width, height, width, height))]
        np.testing.assert_array_equal(got, want)


def test_box_transforms_reject_bad_input():
    with pytest.raises(ValueError, match=r"shape \(K, 4\)"):
        bas_boxes(np.zeros((2, 3)), 10, 10)
    with pytest.raises(ValueError, match="positive"):
        resize_boxes(np.zeros((1, 4)), 0, 10)
