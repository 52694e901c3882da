"""Every image format the loaders accept decodes to the same pixels in both (DALI on the CPU and
the torch loader's PIL path), or is named per file as unsupported by a loader and handled by
``--skip-bad-images``.

Exact equality of the decoded pixels, except 16-bit colour PNGs: PIL keeps the high byte, DALI
rounds ``v / 257``, so they differ by at most one level. GIF: PIL only (DALI has no GIF decoder).
"""
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from wsol_fast.data import IMAGENET_STD, ImageReadError, WSOLDataset, WSOLSplit, make_loader
from wsol_fast.data.images import load_rgb

H, W = 37, 53


def write_png16(path: Path, pixels: np.ndarray, color_type: int) -> None:
    """A 16-bit PNG (``color_type`` 0 grey, 2 RGB, 6 RGBA) written by hand: PIL cannot write 16-bit colour."""
    height, width = pixels.shape[:2]
    raw = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


def write_formats(folder: Path, height: int = H, width: int = W) -> dict[str, Path]:
    """One file per format and flavour, from fresh random pixels."""
    H, W = height, width
    rng = np.random.default_rng(11)
    noise = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:H, 0:W]
    smooth = np.stack([(xx * 4) % 256, (yy * 6) % 256, ((xx + yy) * 3) % 256], -1).astype(np.uint8)
    alpha = rng.integers(0, 256, (H, W, 1), dtype=np.uint8)
    files = {name: folder / name for name in (
        "baseline.jpg", "progressive.jpg", "grey.jpg", "cmyk.jpg", "grey8.png", "grey16.png", "rgb.png",
        "rgba.png", "palette.png", "rgb16.png", "rgba16.png", "grey_alpha.png", "image.bmp", "image.tif",
        "grey16.tif", "lossless.webp", "lossy.webp", "image.gif")}
    Image.fromarray(smooth).save(files["baseline.jpg"], quality=95)
    Image.fromarray(smooth).save(files["progressive.jpg"], quality=95, progressive=True)
    Image.fromarray(smooth[..., 0]).save(files["grey.jpg"], quality=95)
    Image.fromarray(smooth).convert("CMYK").save(files["cmyk.jpg"], quality=95)
    Image.fromarray(noise[..., 0]).save(files["grey8.png"])
    write_png16(files["grey16.png"], rng.integers(0, 65536, (H, W)), 0)
    Image.fromarray(noise).save(files["rgb.png"])
    Image.fromarray(np.dstack([noise, alpha]), "RGBA").save(files["rgba.png"])
    Image.fromarray(noise).convert("P", palette=Image.ADAPTIVE, colors=64).save(files["palette.png"])
    write_png16(files["rgb16.png"], rng.integers(0, 65536, (H, W, 3)), 2)
    write_png16(files["rgba16.png"], rng.integers(0, 65536, (H, W, 4)), 6)
    Image.fromarray(np.dstack([noise[..., 0], alpha[..., 0]]), "LA").save(files["grey_alpha.png"])
    Image.fromarray(noise).save(files["image.bmp"])
    Image.fromarray(noise).save(files["image.tif"])
    Image.fromarray(rng.integers(0, 65536, (H, W)).astype(np.uint16)).save(files["grey16.tif"])
    Image.fromarray(noise).save(files["lossless.webp"], lossless=True)
    Image.fromarray(smooth).save(files["lossy.webp"], quality=90)
    Image.fromarray(noise).convert("P", palette=Image.ADAPTIVE, colors=64).save(files["image.gif"])
    return files


@pytest.fixture(scope="module")
def formats(tmp_path_factory) -> dict[str, Path]:
    return write_formats(tmp_path_factory.mktemp("formats"))


def dali_decode(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 from DALI's CPU decoder, called as the loaders' pipelines call it."""
    from nvidia.dali import fn, pipeline_def

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def decode():
        encoded, _ = fn.readers.file(files=[str(path)])
        return fn.decoders.image(encoded, device="cpu", adjust_orientation=False)

    pipeline = decode()
    pipeline.build()
    (images,) = pipeline.run()
    return np.array(images[0])


def split_of(paths: list[Path]) -> WSOLSplit:
    return WSOLSplit(paths[0].parent, paths, np.zeros(len(paths), dtype=np.int64),
                     [[[1.0, 1.0, 20.0, 20.0]]] * len(paths), [(W, H)] * len(paths), ["only"])


@pytest.mark.parametrize("name", ["baseline.jpg", "progressive.jpg", "grey.jpg", "cmyk.jpg", "grey8.png",
                                  "grey16.png", "rgb.png", "rgba.png", "palette.png", "rgb16.png", "rgba16.png",
                                  "grey_alpha.png", "image.bmp", "image.tif", "grey16.tif", "lossless.webp",
                                  "lossy.webp"])
def test_both_decoders_give_the_same_pixels(formats, name):
    ours = np.asarray(load_rgb(formats[name], 0))
    theirs = dali_decode(formats[name])
    assert ours.shape == theirs.shape == (H, W, 3) and ours.std() > 0
    difference = np.abs(ours.astype(int) - theirs.astype(int)).max()
    assert difference <= (1 if name in ("rgb16.png", "rgba16.png") else 0), difference


def test_sixteen_bit_grey_is_not_clipped_white(formats):
    pixels = np.asarray(load_rgb(formats["grey16.png"], 0))
    assert pixels.min() < 20 and pixels.max() > 235 and 100 < pixels.mean() < 155


def test_both_loaders_give_the_same_batches_for_every_shared_format(tmp_path):
    """Square 32-pixel files read at 32 pixels: no resampling, so the batches are equal."""
    files = write_formats(tmp_path, 32, 32)
    paths = [path for name, path in files.items() if name != "image.gif"]
    dataset = WSOLDataset(split_of(paths), train=False, image_size=32, resize=32, eval_protocol="wsolevaluation")
    dali = torch.cat([images for images, _, _ in make_loader(dataset, 4, loader="dali", workers=0)])
    torch_path = torch.cat([images for images, _, _ in make_loader(dataset, 4, loader="torch", workers=0)])
    level = 1 / 255 / min(IMAGENET_STD)  # one grey level, normalized (the largest step)
    difference = (dali - torch_path).abs().amax(dim=(1, 2, 3))
    sixteen_bit_colour = torch.tensor([path.name in ("rgb16.png", "rgba16.png") for path in paths])
    assert difference[~sixteen_bit_colour].max() < 1e-5 and difference[sixteen_bit_colour].max() <= level * 1.001


def test_gif_is_named_as_unsupported_by_dali_and_skipped_with_the_flag(formats):
    paths = [formats["baseline.jpg"], formats["image.gif"], formats["rgb.png"]]
    dataset = WSOLDataset(split_of(paths), train=False, image_size=32, resize=32)
    with pytest.raises(ImageReadError, match=f"{formats['image.gif']}.*the DALI loader cannot decode gif"):
        list(make_loader(dataset, 3, loader="dali", workers=0))
    with pytest.warns(RuntimeWarning, match="cannot decode gif"):
        loader = make_loader(dataset, 3, loader="dali", workers=0, skip_bad_images=True)
    assert [index for _, _, index in loader][0].tolist() == [0, 2]
    assert [(index, path) for index, path, _ in loader.skipped] == [(1, formats["image.gif"])]
    indices = torch.cat([index for _, _, index in make_loader(dataset, 3, loader="torch", workers=0)])
    assert indices.tolist() == [0, 1, 2], "the torch loader reads GIF"
