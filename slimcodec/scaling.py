"""Coding an image at a higher resolution than its own (``scale``), shared by both runtimes.

A model's latent holds ``width`` values per 16×16 pixels, and that caps its quality at any
rate: near 35.4 dB on photos and 27 dB on screens for the default (its transforms'
ceiling, ``benchmarks/latent_capacity.py``). Coding the image upsampled by ``s`` gives the
transforms ``s²`` times the latent values per pixel of the original, for ``s²`` times
their work: the encoder upsamples with Pillow's Lanczos filter and codes that image, the
file's header records the size it coded (:attr:`~slimcodec.bitstream.Header.coded_size`)
beside the image's, and every decoder synthesizes the coded size and downsamples it to the
image's with the same filter (on 8-bit pixels, so both runtimes resample alike). The rate
counts the original's pixels. ``benchmarks/resampled_coding.py`` measures what each scale
buys and costs (section ``resampled-coding-slimcae-hpc``).
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
    Bitstream,
    Header,
    pack,
    unpack,
)
from slimcodec.errors import ResourceLimitError
from slimcodec.utils.metrics import psnr

__all__ = ["coded_size", "encode_at_scale", "resample", "to_image_size"]


def coded_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """The size an image of ``height × width`` is coded at for ``scale`` (1 to
    :data:`~slimcodec.bitstream.container.MAX_CODING_SCALE`): each side times the scale,
    rounded. Raises ``ValueError`` for a scale out of range, and
    :class:`~slimcodec.errors.ResourceLimitError` for a side a container cannot hold."""
    if not 1 <= scale <= MAX_CODING_SCALE:
        raise ValueError(f"scale {scale:g} is outside 1..{MAX_CODING_SCALE}")
    size = (round(height * scale), round(width * scale))
    if max(size) > MAX_IMAGE_SIDE:
        raise ResourceLimitError(f"a {width}x{height} image at scale {scale:g} would be coded "
                                 f"at {size[1]}x{size[0]}, beyond {MAX_IMAGE_SIDE} pixels a side")
    return size


def resample(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``rgb`` (uint8, ``(H, W, 3)``) resized to ``size`` = (height, width) by Lanczos."""
    if rgb.shape[:2] == tuple(size):
        return rgb
    resized = Image.fromarray(rgb, "RGB").resize((size[1], size[0]), Image.LANCZOS)
    return np.asarray(resized)


def to_image_size(rgb: np.ndarray, header: Header) -> np.ndarray:
    """What a decoder returns of the ``rgb`` it synthesized for ``header``: resampled to
    the image's size where the file was coded at another."""
    return rgb if header.coded_size is None else resample(rgb, header.image_size)


def encode_at_scale(encode: Callable[[np.ndarray], bytes],
                    decode: Callable[[bytes], tuple[np.ndarray, Header]], rgb: np.ndarray,
                    scale: float, max_pixels: int,
                    report: dict[str, Any] | None = None) -> bytes:
    """``encode`` (a codec's encoder, at scale 1) run on ``rgb`` upsampled by ``scale``,
    its file's header then saying the image's size and the size it coded. ``report``:
    what ``encode`` reported, the PSNRs in it (the gate's ``psnr``, refinement's
    ``psnr_predicted``: of the coded image) measured again against ``rgb`` after
    ``decode``, which resamples as every decoder does."""
    height, width = rgb.shape[:2]
    size = coded_size(height, width, scale)
    check_image_size(*size, max_pixels)
    data = encode(resample(rgb, size))
    if size == (height, width):  # a scale too small to change a side
        return data
    bitstream = unpack(data)
    header = replace(bitstream.header, image_size=(height, width), coded_size=size)
    data = pack(Bitstream(header, bitstream.strings))
    measured = [k for k in ("psnr", "psnr_predicted") if k in (report or {})]
    if measured:
        quality = psnr(rgb, decode(data)[0])
        report.update(dict.fromkeys(measured, quality))  # type: ignore[union-attr]
    return data
