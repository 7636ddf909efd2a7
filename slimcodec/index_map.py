r"""Exact blocks: the palette's index map, for screen content drawn in the palette's colours.

Snapping (:mod:`slimcodec.palette`) puts back the colours of the pixels the transforms got
nearly right, but near an edge of aliased text the decoded pixel is often nearer a wrong
colour, and a thin stroke blurs into the background. Where every pixel of a
:data:`BLOCK`\ ×\ :data:`BLOCK` block of the image is one of the palette's colours, the
encoder may send the block's colours as indices into the palette, and every decoder
paints them over its output: the block then decodes exactly. Where it is drawn in blends
of them (anti-aliased text, whose blends the palette holds only some of:
:data:`slimcodec.palette.SEPARATION`), each pixel within :data:`NEAR` of a palette
colour, the block is painted in the nearest colours, a few levels off at most. After the
palette modes of screen-content coders (HEVC SCC, AV1), which code a block as indices
into a few colours; here most indices cost a fraction of a bit, because the decoder's own
output predicts them: symbol 0 says "the palette colour nearest the decoded pixel", and
only where that is wrong is the colour named (symbol ``j + 1`` for colour ``j``). Each
pixel's symbol is coded with the table of its *context*: that nearest colour, and how
many of its eight neighbours have another nearest colour (:data:`EDGES`): on a decoded
edge the nearest colour is wrong about half the time, away from edges almost never.

The decoder derives the contexts from its own output, which the transforms' float
arithmetic makes a level off here and there between machines and runtimes (the golden
files allow one), and a context read differently would set the entropy decoder off. So
the encoder keeps a block exact only where, for each pixel of the block and of the ring
around it, the nearest colour stays the nearest for every pixel value up to
:data:`TOLERANCE` levels off in each channel (:func:`_stable`): there every decoder
derives the encoder's contexts and symbols. (On the held-out screens nearly every pixel
is so.)

The block's bytes (the header's :attr:`~slimcodec.bitstream.Header.index_map`; the
format spec, ``docs/bitstream.md``, says it byte by byte):

* which blocks are exact, one bit each in raster order of the blocks, most significant
  bit first (:func:`numpy.packbits`), the last byte's unused bits 0;
* for each context that some pixel of an exact block has, in ascending order of its
  number (nearest colour × 4 + the bucket of :data:`EDGES`): the number of symbols its
  table codes less one (u8), then per symbol its value (u8, ascending, at most the
  palette's size) and its frequency (u16, at least 1; their sum below 2¹⁶);
* each pixel's symbol, pixels of the exact blocks in raster order of the image, as its
  rank in its context's table, in one rANS string (:mod:`slimcodec.bitstream.tables`),
  the rest of the bytes.

The encoder (:func:`plan`) keeps a block exact where the bits of its symbols are fewer
than the RD loss of the error the paint takes away at the file's λ; the file then carries
the map where the whole of it, flags and table counted, lowers the file's loss
(:mod:`slimcodec.palette`).
"""

from __future__ import annotations

import numpy as np

from slimcodec.bitstream import tables
from slimcodec.errors import CorruptBitstreamError

__all__ = ["BLOCK", "EDGES", "NEAR", "TOLERANCE", "block_grid", "contexts", "flagged_pixels",
           "nearest_and_distance", "nearest_colours", "paint", "pixel_blocks", "plan"]

#: The side of an exact block, in pixels of the image (blocks at the right and bottom
#: edges are cut to the image).
BLOCK = 16
#: The buckets of a pixel's count of its 8 neighbours (the image's edge repeated beyond
#: it) whose nearest colour is another: none, 1 or 2, 3 or 4, 5 or more.
EDGES = (1, 3, 5)
_BUCKETS = len(EDGES) + 1
#: How many levels off in each channel a decoder's output may be, against the encoder's,
#: and still decode every exact block exactly.
TOLERANCE = 2
#: The farthest (squared RGB distance) a pixel of an exact block may be from the palette
#: colour it is painted with: 8 levels off in each channel (13 in one alone). Anti-aliased
#: text's blends between the palette's colours (:data:`slimcodec.palette.SEPARATION`
#: apart) are so.
NEAR = 3 * 8**2
#: Pixels per step of the nearest-colour search (bounds its temporaries).
_STEP = 1 << 14


def _distances(pixels: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """``(N, k)`` float32 |c|² − 2x·c: every term and sum is an integer below 2²⁴, so
    exact in any order (the same on every machine)."""
    palette = colours.astype(np.float32)
    return (palette**2).sum(1)[None] - 2 * (pixels.astype(np.float32) @ palette.T)


def nearest_colours(pixels: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """The index of each of ``pixels`` ``(N, 3)`` uint8's nearest colour of ``colours``
    ``(k, 3)``, k at most 256 (the first of the nearest), uint8."""
    out = np.empty(len(pixels), np.uint8)
    for start in range(0, len(pixels), _STEP):
        out[start:start + _STEP] = _distances(pixels[start:start + _STEP], colours).argmin(1)
    return out


def _stable(pixels: np.ndarray, colours: np.ndarray, tolerance: int = TOLERANCE
            ) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's nearest colour, and whether it stays the nearest (the first of the
    nearest) for every pixel value up to ``tolerance`` levels off in each channel. The
    squared distance to ``c_j`` less that to ``c_i`` is linear in the pixel,
    ``-2x·(c_j − c_i)`` plus a constant, so ``t`` levels move it by at most
    ``2t‖c_j − c_i‖₁``: the nearest ``i`` is stable where every other ``j`` is farther by
    more than that (by at least that, for a ``j`` after ``i``, which a tie does not make
    the nearest)."""
    c = colours.astype(np.int64)
    l1 = 2 * tolerance * np.abs(c[:, None] - c[None]).sum(-1)
    after = np.arange(len(c))[None] > np.arange(len(c))[:, None]  # [i, j]: j after i
    nearest = np.empty(len(pixels), np.int64)
    stable = np.empty(len(pixels), bool)
    for start in range(0, len(pixels), _STEP):
        d = _distances(pixels[start:start + _STEP], colours).astype(np.int64)
        i = d.argmin(1)
        lead = d - d[np.arange(len(d)), i][:, None] - l1[i]  # margin beyond the bound
        lead[np.arange(len(d)), i] = 1
        nearest[start:start + _STEP] = i
        stable[start:start + _STEP] = ((lead > 0) | ((lead == 0) & after[i])).all(1)
    return nearest, stable


def block_grid(shape: tuple[int, int]) -> tuple[int, int]:
    """The rows and columns of :data:`BLOCK`-pixel blocks of an image of ``shape``."""
    return -(-shape[0] // BLOCK), -(-shape[1] // BLOCK)


def pixel_blocks(shape: tuple[int, int]) -> np.ndarray:
    """Each pixel's block of :data:`BLOCK` pixels, in raster order of the blocks,
    ``(H * W,)`` int64."""
    rows, cols = np.arange(shape[0]) // BLOCK, np.arange(shape[1]) // BLOCK
    return (rows[:, None] * block_grid(shape)[1] + cols[None]).reshape(-1)


def flagged_pixels(data: bytes, offset: int, shape: tuple[int, int], none: str
                   ) -> tuple[np.ndarray, int]:
    """The pixels of the blocks flagged in ``data`` from ``offset`` on (one bit per block
    of an image of ``shape``, in raster order of the blocks, most significant bit first,
    the last byte's unused bits 0), ``(H * W,)`` bool, and the offset after the flags.
    ValueError where the flags are cut, a bit beyond the last block is set, or none is
    (``none`` says so)."""
    blocks = block_grid(shape)[0] * block_grid(shape)[1]
    end = offset + -(-blocks // 8)
    if len(data) < end:
        raise ValueError(f"{len(data)} bytes, its block flags alone need {end}")
    bits = np.unpackbits(np.frombuffer(data, np.uint8, end - offset, offset))
    if bits[blocks:].any():
        raise ValueError("bits set beyond the last block")
    flags = bits[:blocks].astype(bool)
    if not flags.any():
        raise ValueError(none)
    return flags[pixel_blocks(shape)], end


def contexts(nearest: np.ndarray) -> np.ndarray:
    """Each pixel's context, ``(H * W,)`` int32, from the ``(H, W)`` map of its nearest
    palette colour: that colour × 4 plus the bucket (:data:`EDGES`) of its count of the 8
    neighbours whose nearest colour is another. (In bytes and int32, a few bytes a pixel:
    a screen capture can be tens of megapixels.)"""
    padded = np.pad(nearest, 1, mode="edge")
    h, w = nearest.shape
    others = np.zeros((h, w), np.uint8)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                others += padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] != nearest
    bucket = np.searchsorted(np.asarray(EDGES, np.uint8), others, side="right")
    return (nearest.astype(np.int32) * _BUCKETS + bucket.astype(np.int32)).reshape(-1)


def nearest_and_distance(pixels: np.ndarray, colours: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Each of ``pixels`` ``(N, 3)`` uint8's nearest colour of ``colours`` (the first of the
    nearest) and its squared distance to it, both int32: :func:`_distances` plus |x|², every
    term and sum an integer below 2²⁴ in float32, so exact (the same on every machine)."""
    index = np.empty(len(pixels), np.int32)
    distance = np.empty(len(pixels), np.int32)
    for start in range(0, len(pixels), _STEP):
        block = pixels[start:start + _STEP]
        d = _distances(block, colours)
        i = d.argmin(1)
        index[start:start + _STEP] = i
        distance[start:start + _STEP] = d[np.arange(len(d)), i] + (
            block.astype(np.float32) ** 2).sum(1)
    return index, distance


def plan(original: np.ndarray, decoded: np.ndarray, colours: np.ndarray, lmbda: float,
         ) -> tuple[bytes, np.ndarray] | None:
    """The index map for a file that decodes ``original`` to ``decoded`` (after the snap)
    with the palette ``colours`` ``(k, 3)``, k at most 255, at the RD weight ``lmbda``
    (per pixel of the image, :func:`~slimcodec.bitstream.rate.rd_loss`'s): its bytes and
    the image it paints, or None where no block pays. A block each pixel of which lies
    within :data:`NEAR` of a palette colour, stable (the module's docstring), is painted,
    each pixel in the palette colour nearest its original, where its symbols' bits, by
    their contexts' frequencies over the blocks kept, are fewer than ``lmbda`` times the
    squared error (summed over channels, over 3) the paint takes away; the frequencies
    are fitted to the blocks the paint mends, then again to those kept, three times."""
    k = len(colours)
    if k > 255:  # a symbol is a byte
        return None
    shape = original.shape[:2]
    truth, off = nearest_and_distance(original.reshape(-1, 3), colours)
    nearest, stable = _stable(decoded.reshape(-1, 3), colours)
    # a block's pixels and the ring around them stable: every decoder's contexts the same
    unstable = np.pad(~stable.reshape(shape), 1)
    ring = np.zeros(shape, bool)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            ring |= unstable[dy:dy + shape[0], dx:dx + shape[1]]
    block = pixel_blocks(shape)
    blocks = block_grid(shape)[0] * block_grid(shape)[1]
    candidate = np.bincount(block, weights=(off > NEAR) | ring.reshape(-1),
                            minlength=blocks) == 0
    error = ((decoded.astype(np.int64) - original) ** 2).sum(-1).reshape(-1)
    gain = lmbda * np.bincount(block, weights=error - off, minlength=blocks) / 3
    kept = candidate & (gain > 0)
    if not kept.any():
        return None
    symbol = np.where(nearest == truth, 0, truth + 1)
    context = contexts(nearest.reshape(shape))
    inside = candidate[block]
    pair = context * (k + 1) + symbol
    for _ in range(3):  # fit the frequencies to the blocks kept, keep those that pay
        mask = kept[block]
        joint = np.bincount(pair[mask], minlength=_BUCKETS * k * (k + 1)).astype(float)
        totals = joint.reshape(-1, k + 1).sum(1)
        # half a count for a symbol a context has not seen: a block the fit did not see
        # may still pay
        bits = -np.log2((joint[pair[inside]] + 0.5) / (totals[context[inside]] + 0.5 * (k + 1)))
        cost = np.bincount(block[inside], weights=bits, minlength=blocks)
        kept = candidate & (cost < gain)
        if not kept.any():
            return None
    mask = kept[block]
    head, string = tables.encode(symbol[mask], context[mask])
    data = np.packbits(kept).tobytes() + head + string
    painted = decoded.reshape(-1, 3).copy()
    painted[mask] = colours[truth[mask]]
    return data, painted.reshape(decoded.shape)


def paint(rgb: np.ndarray, colours: np.ndarray, data: bytes) -> np.ndarray:
    """``rgb`` (the decoder's ``(H, W, 3)`` uint8 output, snapped) with the exact blocks of
    the index map ``data`` painted in the palette ``colours``; a new array.
    :class:`~slimcodec.errors.CorruptBitstreamError` where ``data`` is not exactly an index
    map of an image of this size and palette."""
    shape = rgb.shape[:2]
    try:
        mask, head = flagged_pixels(data, 0, shape, "no exact block")
    except ValueError as exc:
        raise _corrupt(str(exc)) from None
    nearest = nearest_colours(rgb.reshape(-1, 3), colours)
    try:
        symbol, _ = tables.decode(data, head, contexts(nearest.reshape(shape))[mask], 0,
                                  len(colours))
    except ValueError as exc:
        raise _corrupt(str(exc)) from None
    index = np.where(symbol > 0, symbol - 1, nearest[mask])
    out = rgb.reshape(-1, 3).copy()
    out[mask] = colours[index]
    return out.reshape(rgb.shape)


def _corrupt(what: str) -> CorruptBitstreamError:
    return CorruptBitstreamError(f"corrupt slimcodec file: index map: {what}")
