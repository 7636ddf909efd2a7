"""Reading images of any PIL mode into 8-bit RGB (numpy and Pillow only: the edge runtime
uses it too; the tensors the models take are in :mod:`slimcodec.utils.tensors`).

The conversion rules (also in ``docs/bitstream.md``):

* EXIF orientation is applied first, so the image is coded as it is displayed.
* ``RGB``: as is. ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``: converted by Pillow.
* ``L`` and ``1``: grayscale, replicated to three channels; the container's grayscale flag
  makes the decoder return an ``L`` image again (ITU-R 601 luma of the reconstruction).
* ``I;16*`` and ``I`` (16-bit grayscale): scaled to 8 bits, ``round(v / 257)``, clipped.
  ``F`` (float grayscale): taken as 0..255 and clipped.
* Alpha (``RGBA``, ``LA``, ``PA``, ``P`` with transparency, ...): composited over white, since
  the codec has no alpha channel; the alpha channel itself is not coded.
* ``P`` (palette): expanded to RGB (or grayscale when the palette is gray).
* Multi-frame files (GIF, TIFF): the first frame.

Whenever a conversion loses something the file holds (transparency that is not fully
opaque, 16-bit or float samples that 8 bits do not represent exactly, frames after the
first), a :class:`~slimcodec.errors.LossyConversionWarning` says what.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from slimcodec.errors import ImageError, LossyConversionWarning, ResourceLimitError
from slimcodec.utils.io import STDIO, files_under, read_input

__all__ = ["IMAGE_SUFFIXES", "ImageLike", "find_images", "image_argument", "load_rgb", "to_rgb"]

ImageLike = str | os.PathLike | Image.Image | np.ndarray

_WHITE = (255, 255, 255)
_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
                  ".gif"}


def find_images(root: str | os.PathLike) -> list[Path]:
    """Image files under ``root`` (recursive, sorted); ``root`` may also be one file."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise ImageError(f"{root}: no such file or directory")
    return files_under(root, IMAGE_SUFFIXES)


def image_argument(path: str) -> ImageLike:
    """A command-line image argument: ``path``, or for ``-`` the image file on standard
    input (opened lazily, so that :func:`load_rgb` checks its size before decoding it)."""
    if path != STDIO:
        return path
    try:
        return Image.open(io.BytesIO(read_input(STDIO)))
    except UnidentifiedImageError:
        raise ImageError("standard input: not an image in a format Pillow reads") from None
    except (Image.DecompressionBombError, OSError, ValueError) as exc:
        raise ImageError(f"standard input: not a readable image ({exc})") from None


def _lossy(source: str | None, what: str) -> None:
    warnings.warn(f"{source}: {what}" if source else what, LossyConversionWarning,
                  stacklevel=3)


def _flatten_alpha(img: Image.Image, source: str | None) -> Image.Image:
    rgba = img.convert("RGBA")
    if rgba.getchannel("A").getextrema()[0] < 255:
        _lossy(source, "transparency composited over white: the codec codes no alpha channel")
    background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _is_gray(rgb: Image.Image) -> bool:
    a = np.asarray(rgb)
    return bool((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())


def to_rgb(img: Image.Image, source: str | None = None) -> tuple[Image.Image, bool]:
    """Convert a PIL image by the rules above. Returns ``(rgb_image, was_grayscale)``.
    ``source`` (a file name) starts the message of any :class:`LossyConversionWarning`."""
    with contextlib.suppress(Exception):  # a broken EXIF block must not stop the conversion
        img = ImageOps.exif_transpose(img)
    mode = img.mode
    try:
        if mode == "RGB":
            return img, False
        if mode in ("L", "1"):
            return img.convert("L").convert("RGB"), True
        if mode in _SIXTEEN_BIT:
            a = np.asarray(img, dtype=np.float64)
            if mode == "I" and (a.min() < 0 or a.max() > 65535):
                _lossy(source, "32-bit integer samples clipped to 0..65535, then rounded to "
                       "8 bits: the codec codes 8 bits per sample")
                a = np.clip(a, 0, 65535)
            elif (a % 257).any():  # 8-bit data stored as 16 bits is v * 257 exactly
                _lossy(source, "16-bit samples rounded to 8 bits: the codec codes 8 bits "
                       "per sample")
            a = np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8)
            return Image.fromarray(a, "L").convert("RGB"), True
        if mode == "F":
            a = np.asarray(img, dtype=np.float64)
            b = np.clip(np.rint(a), 0, 255)
            if (b != a).any():
                _lossy(source, "float samples rounded and clipped to 0..255")
            return Image.fromarray(b.astype(np.uint8), "L").convert("RGB"), True
        if mode == "LA" or mode == "La":
            return _flatten_alpha(img.convert("LA").convert("RGBA"), source), True
        if mode == "P":
            has_alpha = "transparency" in img.info or img.palette.mode == "RGBA"
            rgb = _flatten_alpha(img, source) if has_alpha else img.convert("RGB")
            return rgb, _is_gray(rgb)
        if "A" in mode or mode == "RGBa" or mode == "PA":
            return _flatten_alpha(img, source), False
        return img.convert("RGB"), False
    except (ValueError, OSError) as exc:
        raise ImageError(f"cannot convert an image of mode {mode!r} to RGB: {exc}") from None


def load_rgb(image: ImageLike, max_pixels: int | None = None) -> tuple[np.ndarray, bool]:
    """Load a path, PIL image or uint8 array as an ``(H, W, 3)`` uint8 array.

    Returns the array and whether the source was grayscale. Raises :class:`ImageError` for
    unreadable files and unsupported arrays, and :class:`ResourceLimitError` for an image of
    more than ``max_pixels`` pixels, checked on the file's header before it is decoded.
    """
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ImageError(f"arrays must be uint8, got {image.dtype}")
        if image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4)):
            arr = image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image
            image = Image.fromarray(np.ascontiguousarray(arr))
        else:
            raise ImageError(f"arrays must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), "
                             f"got {image.shape}")
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        try:
            with Image.open(path) as opened:
                ResourceLimitError.check_pixels(*opened.size, max_pixels)
                frames = getattr(opened, "n_frames", 1)
                if frames > 1:
                    _lossy(str(path), f"only the first of its {frames} frames is coded")
                # Pillow reads 16-bit colour (RGB;16B and kin) as 8-bit, keeping the high
                # bytes: what it drops cannot be seen after loading, so it is said here.
                if opened.mode in ("RGB", "RGBA") and any(
                        ";16" in str(tile.args) for tile in opened.tile):
                    _lossy(str(path), "16-bit colour samples reduced to their high 8 bits: "
                           "the codec codes 8 bits per sample")
                opened.load()
                rgb, gray = to_rgb(opened, str(path))
                return np.array(rgb, dtype=np.uint8), gray
        except FileNotFoundError:
            raise ImageError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise ImageError(f"{path}: is a directory") from None
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError,
                ValueError) as exc:
            raise ImageError(f"{path}: not a readable image ({exc})") from None
    if not isinstance(image, Image.Image):
        raise ImageError(f"expected a path, PIL image or uint8 array, got {type(image).__name__}")
    ResourceLimitError.check_pixels(*image.size, max_pixels)
    rgb, gray = to_rgb(image)
    return np.array(rgb, dtype=np.uint8), gray
