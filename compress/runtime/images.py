"""Images into a model's input exactly as data preparation made the training data: the one
decoder (files and PIL images: transparency composited on black, 16-bit and float scaled by
their range, converted to L or RGB, resized bilinearly) and the one normalization. Preparation,
training, `compress-predict` and the benchmarks all go through here, so a deployed model sees
what it was trained on."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

# What PIL raises for a file that is not a readable image (corrupt, empty, truncated, not one).
IMAGE_READ_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError)


def convert_image(image: Image.Image, size: int, channels: int) -> np.ndarray:
    """A PIL image as (C, size, size) uint8 pixels, converted the way training data was."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image, dtype=np.float32)
        top = 65535.0 if image.mode.startswith("I") and values.max() > 255 else 255.0
        image = Image.fromarray((np.clip(values / top, 0, 1) * 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.new("RGB", rgba.size)
        image.paste(rgba, mask=rgba.getchannel("A"))
    image = image.convert("L" if channels == 1 else "RGB")
    image = image.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def pixel_key(pixels: np.ndarray, mode: str) -> str:
    """An image's identity from its pixels as the source decodes them (mode, shape, type and
    values), before any conversion or resize: `data.image_size`, `data.channels` and the
    resampler never change it, and neither does a lossless re-save that decodes to the same
    mode."""
    digest = hashlib.sha1(f"{mode}:{pixels.shape}:{pixels.dtype.str}:".encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


def source_pixels(image: Image.Image) -> tuple[np.ndarray, str]:
    """The pixels an image's key is taken from, and their mode: a palette image's are the
    colours its indices stand for (two files with the same indices and other palettes are
    other pictures)."""
    if image.mode in ("P", "PA"):
        return np.asarray(image.convert("RGBA")), "RGBA"
    return np.asarray(image), image.mode


def decode_image_file(
    source: Path | BinaryIO, size: int, channels: int
) -> tuple[np.ndarray, str, str, str]:
    """The image as (C, size, size) uint8 pixels, the file's own size ("WxH") and PIL mode,
    and the `pixel_key` of its decoded pixels."""
    with Image.open(source) as image:
        image.load()
        original_size, original_mode = "x".join(map(str, image.size)), image.mode
        key = pixel_key(*source_pixels(image))
        return convert_image(image, size, channels), original_size, original_mode, key


def decode_image(source: Path | BinaryIO, size: int, channels: int) -> np.ndarray:
    """Any PIL-readable image as (C, size, size) float32 in [0, 1]."""
    return to_unit(decode_image_file(source, size, channels)[0])


def to_unit(pixels: np.ndarray) -> np.ndarray:
    """Stored pixels (uint8, or float32 already in [0, 1]) as float32 in [0, 1]."""
    return pixels.astype(np.float32) / np.float32(255.0) if pixels.dtype == np.uint8 else pixels


def normalize(images: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """(images - mean) / std per channel, with the statistics of the prepared train split; images
    in [0, 1], channels first ((C, H, W) or (N, C, H, W)). Training and prediction both call it."""
    shape = (-1, 1, 1)
    return (images - np.asarray(mean, np.float32).reshape(shape)) / np.asarray(
        std, np.float32
    ).reshape(shape)
