"""Analysis and synthesis tile by tile, so that the network's memory does not grow with the
image.

A whole-image pass holds every activation of the image at once: about 0.23 GB per megapixel
at width 192, 3 GB for a phone photo. Here each tile of ``tile`` latent positions (16 pixels
each) runs with a halo of ``halo`` positions on every side, clipped at the image, and only
its centre is kept. Both transforms are convolutions, GDNs (1x1) and per-channel scales,
so a latent position depends on input pixels within ±28 of its own 16x16 block
(9x9/4 -> 5x5/2 -> 5x5/2), and an output pixel on latent positions within about ±2: with a
halo of 3 the tiled result is the whole-image one up to float rounding
(``tests/test_tiling.py`` checks it), and the zero padding of the convolutions falls at the
image border in both.

What does grow with the image are the arrays that must exist whole: the input or output
image (3 bytes a pixel) and the latent (4 bytes a value: C/64 bytes a pixel at width C, 3 at
width 192), which the latent coders (:mod:`slimcodec.latent`) hold about once.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator

import numpy as np

from slimcodec.utils.console import positive_int
from slimcodec.utils.memory import release_freed_memory

__all__ = [
    "DEFAULT_HALO",
    "DEFAULT_TILE",
    "add_tile_argument",
    "analyze",
    "padded_region",
    "processed_pixels",
    "spans",
    "synthesize",
    "to_pixels",
    "unchanged",
]

DEFAULT_TILE = 32  # latent positions: 512 pixels
DEFAULT_HALO = 3


def add_tile_argument(parser: argparse.ArgumentParser) -> None:
    """``--tile N`` for a command that runs the transforms (``slimcodec`` and
    ``slimcodec-edge`` alike): their tile size, in latent positions."""
    parser.add_argument(
        "--tile", type=positive_int, default=DEFAULT_TILE, metavar="N",
        help=f"run the transforms in tiles of N latent positions, 16 pixels each (default: "
             f"{DEFAULT_TILE}, {16 * DEFAULT_TILE} pixels): smaller holds less memory and "
             "runs slower, as the halo each tile recomputes grows against it")


def unchanged(latent: np.ndarray) -> np.ndarray:
    """The ``quantize`` / ``dequantize`` step for callers whose latent coder
    (:mod:`slimcodec.latent`) rounds and restores the latent itself."""
    return latent


#: ``(1, C, h, w)`` float32 -> ``(1, C', h', w')`` float32: a transform as the tiler calls it
#: (the torch codec wraps its model's, the edge runtime an onnxruntime session).
Transform = Callable[[np.ndarray], np.ndarray]


def spans(length: int, tile: int, halo: int) -> Iterator[tuple[int, int, int, int]]:
    """``(start, stop, lo, hi)`` per tile along one axis of ``length`` latent positions:
    the tile keeps ``[start, stop)`` and runs on ``[lo, hi)``, its halo clipped to the axis."""
    for start in range(0, length, tile):
        stop = min(start + tile, length)
        yield start, stop, max(start - halo, 0), min(stop + halo, length)


def processed_pixels(height: int, width: int, downsampling: int = 16,
                     tile: int = DEFAULT_TILE, halo: int = DEFAULT_HALO) -> int:
    """The pixels the transforms run on for an image of this size: every tile with its
    halo (what its coding time grows with; a budget scales by it)."""
    lh, lw = -(-height // downsampling), -(-width // downsampling)
    rows = sum(hi - lo for _, _, lo, hi in spans(lh, tile, halo))
    cols = sum(hi - lo for _, _, lo, hi in spans(lw, tile, halo))
    return rows * cols * downsampling**2


def padded_region(rgb: np.ndarray, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """Pixels ``rows x cols`` of the image replicate-padded on the bottom and right (as
    :func:`slimcodec.utils.tensors.pad_to_multiple` pads it), as ``(1, 3, h, w)`` in [0, 1]."""
    h, w = rgb.shape[:2]
    r = np.minimum(np.arange(*rows), h - 1)
    c = np.minimum(np.arange(*cols), w - 1)
    region = rgb[r[:, None], c[None, :]]
    return np.ascontiguousarray(region.transpose(2, 0, 1)[None], dtype=np.float32) / 255


def to_pixels(x: np.ndarray) -> np.ndarray:
    """``(3, h, w)`` float in [0, 1] -> ``(h, w, 3)`` uint8, rounding half to even (as
    torch's ``round`` does)."""
    return np.rint(np.clip(x, 0, 1) * np.float32(255)).astype(np.uint8).transpose(1, 2, 0)


def analyze(
    transform: Transform,
    rgb: np.ndarray,
    factor: int,
    quantize: Callable[[np.ndarray], np.ndarray],
    tile: int = DEFAULT_TILE,
    halo: int = DEFAULT_HALO,
) -> np.ndarray:
    """Run ``transform`` (image -> latent, downsampling by ``factor``) over ``rgb``
    ``(H, W, 3)`` uint8 tile by tile, ``quantize`` each ``(C, h, w)`` latent tile (to int32
    symbols, or leave it float) and return the ``(C, ceil(H/f), ceil(W/f))`` latent."""
    lh, lw = -(-rgb.shape[0] // factor), -(-rgb.shape[1] // factor)
    out: np.ndarray | None = None
    for top, bottom, r0, r1 in spans(lh, tile, halo):
        for left, right, c0, c1 in spans(lw, tile, halo):
            x = padded_region(rgb, (r0 * factor, r1 * factor), (c0 * factor, c1 * factor))
            y = transform(x)[0, :, top - r0 : bottom - r0, left - c0 : right - c0]
            q = quantize(y)
            if out is None:
                out = np.empty((q.shape[0], lh, lw), dtype=q.dtype)
            out[:, top:bottom, left:right] = q
    assert out is not None
    return out


def synthesize(
    transform: Transform,
    dequantize: Callable[[np.ndarray], np.ndarray],
    symbols: np.ndarray,
    size: tuple[int, int],
    factor: int,
    tile: int = DEFAULT_TILE,
    halo: int = DEFAULT_HALO,
) -> np.ndarray:
    """Run ``transform`` (latent -> image) over the ``(C, h, w)`` integer latent tile by
    tile (``dequantize`` turns each ``(C, h, w)`` tile back into floats) and return the
    ``size`` ``(H, W, 3)`` uint8 image."""
    height, width = size
    release_freed_memory()  # the latent coder's freed temporaries, before the tiles'
    out = np.empty((height, width, 3), dtype=np.uint8)
    _, lh, lw = symbols.shape
    for top, bottom, r0, r1 in spans(lh, tile, halo):
        for left, right, c0, c1 in spans(lw, tile, halo):
            rows = (top * factor, min(bottom * factor, height))
            cols = (left * factor, min(right * factor, width))
            if rows[0] >= rows[1] or cols[0] >= cols[1]:
                continue  # a tile wholly in the padding
            y = dequantize(symbols[:, r0:r1, c0:c1])
            x = transform(np.ascontiguousarray(y[None], dtype=np.float32))
            keep = x[0, :, rows[0] - r0 * factor : rows[1] - r0 * factor,
                     cols[0] - c0 * factor : cols[1] - c0 * factor]
            out[rows[0] : rows[1], cols[0] : cols[1]] = to_pixels(keep)
    return out
