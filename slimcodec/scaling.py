"""Coding an image at a higher resolution than its own (``scale``), shared by both runtimes.

A model's latent holds ``width`` values per 16×16 pixels, and that caps its quality at any
rate: near 35.4 dB on photos and 27 dB on screens for the default (its transforms'
ceiling, ``benchmarks/latent_capacity.py``). Coding the image upsampled by ``s`` gives the
transforms ``s²`` times the latent values per pixel of the original, for ``s²`` times
their work: the encoder upsamples the image and codes that, the file's header records the
size it coded (:attr:`~slimcodec.bitstream.Header.coded_size`) beside the image's and the
filter, and every decoder synthesizes the coded size and resamples it to the image's with
that filter (Pillow's, on 8-bit pixels, so both runtimes resample alike). The rate counts
the original's pixels. Two filters (:data:`~slimcodec.bitstream.container.RESAMPLING`):
``lanczos`` (up and down), and ``box``, nearest-neighbour up and area-average down, which
undoes an integer scale's upsampling exactly and keeps text's edges.
``benchmarks/resampled_coding.py`` measures what each scale buys and costs (section
``resampled-coding-slimcae-hpc``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from PIL import Image

from slimcodec.bitstream.checks import check_image_size
from slimcodec.bitstream.container import (
    MAX_CODING_SCALE,
    MAX_IMAGE_SIDE,
    RESAMPLING,
    Bitstream,
    Header,
    pack,
    unpack,
)
from slimcodec.errors import ResourceLimitError
from slimcodec.utils.metrics import psnr

__all__ = ["FILTERS", "check_scale", "coded_size", "encode_at_scale", "resample",
           "to_image_size"]

#: Each filter of the container's :data:`RESAMPLING`: Pillow's filter for the encoder's
#: upsampling, and for the decoder's resizing to the image's size.
FILTERS = {"lanczos": (Image.LANCZOS, Image.LANCZOS), "box": (Image.NEAREST, Image.BOX)}
assert tuple(FILTERS) == RESAMPLING


def check_scale(scale: float) -> None:
    """Raise ``ValueError`` unless ``scale`` is 1 to
    :data:`~slimcodec.bitstream.container.MAX_CODING_SCALE` (the command lines call it
    before any work)."""
    if not 1 <= scale <= MAX_CODING_SCALE:
        raise ValueError(f"scale {scale:g} is outside 1..{MAX_CODING_SCALE}")


def coded_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """The size an image of ``height × width`` is coded at for ``scale`` (1 to
    :data:`~slimcodec.bitstream.container.MAX_CODING_SCALE`): each side times the scale,
    rounded. Raises ``ValueError`` for a scale out of range, and
    :class:`~slimcodec.errors.ResourceLimitError` for a side a container cannot hold."""
    check_scale(scale)
    size = (round(height * scale), round(width * scale))
    if max(size) > MAX_IMAGE_SIDE:
        raise ResourceLimitError(f"a {width}x{height} image at scale {scale:g} would be coded "
                                 f"at {size[1]}x{size[0]}, beyond {MAX_IMAGE_SIDE} pixels a side")
    return size


def resample(rgb: np.ndarray, size: tuple[int, int], method: int) -> np.ndarray:
    """``rgb`` (uint8, ``(H, W, 3)``) resized to ``size`` = (height, width) with Pillow's
    filter ``method``."""
    if rgb.shape[:2] == tuple(size):
        return rgb
    return np.asarray(Image.fromarray(rgb, "RGB").resize((size[1], size[0]), method))


def to_image_size(rgb: np.ndarray, header: Header) -> np.ndarray:
    """What a decoder returns of the ``rgb`` it synthesized for ``header``: resampled to
    the image's size with the file's filter where it was coded at another size."""
    if header.coded_size is None:
        return rgb
    return resample(rgb, header.image_size, FILTERS[RESAMPLING[header.resampling]][1])


def encode_at_scale(encode: Callable[[np.ndarray], bytes],
                    decode: Callable[[bytes], tuple[np.ndarray, Header]], rgb: np.ndarray,
                    scale: float, max_pixels: int,
                    report: dict[str, Any] | None = None, resampling: str = "lanczos"
                    ) -> bytes:
    """``encode`` (a codec's encoder, at scale 1) run on ``rgb`` upsampled by ``scale``
    with the filter ``resampling`` (one of :data:`FILTERS`), its file's header then saying
    the image's size, the size it coded and the filter. ``report``:
    what ``encode`` reported, the PSNRs in it (the gate's ``psnr``, refinement's
    ``psnr_predicted``: of the coded image) measured again against ``rgb`` after
    ``decode``, which resamples as every decoder does."""
    if resampling not in FILTERS:
        raise ValueError(f"resampling {resampling!r} is not one of {', '.join(FILTERS)}")
    height, width = rgb.shape[:2]
    size = coded_size(height, width, scale)
    check_image_size(*size, max_pixels)
    data = encode(resample(rgb, size, FILTERS[resampling][0]))
    if size == (height, width):  # a scale too small to change a side
        return data
    bitstream = unpack(data)
    header = replace(bitstream.header, image_size=(height, width), coded_size=size,
                     resampling=RESAMPLING.index(resampling))
    data = pack(Bitstream(header, bitstream.strings))
    measured = [k for k in ("psnr", "psnr_predicted") if k in (report or {})]
    if measured:
        quality = psnr(rgb, decode(data)[0])
        report.update(dict.fromkeys(measured, quality))  # type: ignore[union-attr]
    return data
