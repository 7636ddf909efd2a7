r"""The residual: a near-lossless correction of the blocks the transforms code worst.

On text the transforms stop far below what a screen needs (near 23–28 dB at the top λ,
whatever the text), and where text is drawn in blends off the line between its colours
(subpixel, ClearType-like text: each of red, green and blue its own coverage) the palette
cannot hold them, so neither the snap nor the exact blocks (:mod:`slimcodec.palette`,
:mod:`slimcodec.index_map`) mend it. A file may then carry, for chosen
:data:`~slimcodec.index_map.BLOCK`\ ×\ :data:`~slimcodec.index_map.BLOCK` blocks, the
difference between the image and what the decoder returns, quantized with a uniform step
``s``: each decoder adds ``s·q`` to each channel of each pixel of those blocks, clipped
to 0..255, which puts it within ``s/2`` of the original (a decoder whose output is a
level off, a level more). After near-lossless JPEG-LS, which bounds each pixel's error by
the step; unlike it, the prediction is the decoder's own output rather than the
already-decoded neighbours, so that the whole layer decodes in one vectorized pass per
channel.

A channel's symbols ``q`` are coded (:mod:`slimcodec.bitstream.tables`) in contexts of
the channels decoded before it at the same pixel: red in one context, green in that of
``min(|q_red|, 3)``, blue in ``4·min(|q_green|, 3) + min(|q_red|, 3)``: an edge the
transforms blur errs in all three channels at once (a subpixel fringe, in each
differently). The contexts never read the decoder's output, so a decoder a level off
decodes the same symbols.

The block's bytes (the header's :attr:`~slimcodec.bitstream.Header.residual`;
``docs/bitstream.md`` says them byte by byte): the step (u8, at least :data:`MIN_STEP`);
one bit per block in raster order of the blocks, most significant first, 1 where the
block is corrected; then per channel, red, green, blue: its length (u32), the tables of
its contexts used and its string, of the pixels of the corrected blocks in raster order
of the image.

The encoder (:func:`plan`) corrects a block where the bits of its symbols are fewer than
the RD loss of the error the correction takes away at the file's λ, and
:mod:`slimcodec.palette` sends the step of the lowest RD loss among :func:`steps`, or
none.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from slimcodec.bitstream import tables
from slimcodec.errors import CorruptBitstreamError
from slimcodec.index_map import block_grid, flagged_pixels, pixel_blocks

__all__ = ["MIN_STEP", "SPREAD", "add", "plan", "steps"]

#: The smallest step a file may use: each symbol then fits a signed byte.
MIN_STEP = 3
#: The steps the encoder tries: the high-rate optimum :func:`steps` gives, times each.
SPREAD = (1.0, 2**0.5)
#: A channel's symbol magnitudes counted by the contexts of the channels after it.
_CAP = 3
_STEP = struct.Struct("<B")
_LENGTH = struct.Struct("<I")


def _contexts(q: np.ndarray, channel: int) -> np.ndarray:
    """The contexts of ``channel``'s symbols given ``q`` ``(N, 3)``'s earlier channels."""
    capped = np.minimum(np.abs(q[:, :channel]), _CAP)
    if channel == 0:
        return np.zeros(len(q), np.int64)
    if channel == 1:
        return capped[:, 0].astype(np.int64)
    return (_CAP + 1) * capped[:, 1].astype(np.int64) + capped[:, 0]


def steps(lmbda: float) -> tuple[int, ...]:
    """The steps the encoder tries at the RD weight ``lmbda`` (per pixel): the optimum of a
    uniform quantizer at high rate, times each of :data:`SPREAD`, from :data:`MIN_STEP` to
    255. A step ``s`` leaves ``s²/12`` of squared error in each channel and spends
    ``h − log₂ s`` bits on it, so a pixel's loss is ``λ·s²/12 − 3·log₂ s`` plus a
    constant, least at ``s² = 18 / (λ ln 2)``. On text the residual is not that smooth,
    and the best step, tried ad hoc on held-out screens, lay between it and √2 times it
    at every λ."""
    best = math.sqrt(18 / (lmbda * math.log(2)))
    return tuple(dict.fromkeys(min(255, max(MIN_STEP, round(best * k))) for k in SPREAD))


def _corrected(decoded: np.ndarray, q: np.ndarray, step: int) -> np.ndarray:
    return np.clip(decoded.astype(np.int16) + step * q.astype(np.int16), 0, 255).astype(np.uint8)


def plan(original: np.ndarray, decoded: np.ndarray, lmbda: float, step: int,
         ) -> tuple[bytes, np.ndarray] | None:
    """The residual of step ``step`` for a file that decodes ``original`` ``(H, W, 3)``
    uint8 to ``decoded`` (after the snap and the exact blocks) at the RD weight ``lmbda``
    (per pixel of the image, :func:`~slimcodec.bitstream.rate.rd_loss`'s): its bytes and
    the image it decodes to, or None where no block pays. A block is corrected where its
    symbols' bits, by their contexts' frequencies over the blocks kept, and its flag bit
    are fewer than ``lmbda`` times the squared error (summed over channels, over 3) the
    correction takes away; the frequencies are fitted to the blocks the correction mends,
    then again to those kept, three times."""
    if step < MIN_STEP:
        raise ValueError(f"a residual's step is at least {MIN_STEP}")
    shape = original.shape[:2]
    error = original.astype(np.int16) - decoded
    q = np.round(error / step).astype(np.int8).reshape(-1, 3)
    fixed = _corrected(decoded, q.reshape(decoded.shape), step)
    block = pixel_blocks(shape)
    blocks = block_grid(shape)[0] * block_grid(shape)[1]
    mended = ((error.astype(np.int32) ** 2).sum(-1)
              - ((fixed.astype(np.int32) - original) ** 2).sum(-1)).reshape(-1)
    gain = lmbda * np.bincount(block, weights=mended, minlength=blocks) / 3
    candidate = np.bincount(block, weights=(q != 0).any(1), minlength=blocks) > 0
    kept = candidate & (gain > 1)
    if not kept.any():
        return None
    inside = candidate[block]
    symbol = q.astype(np.int64) + 128
    pairs = [_contexts(q, c) * 256 + symbol[:, c] for c in range(3)]
    for _ in range(3):  # fit the frequencies to the blocks kept, keep those that pay
        mask = kept[block]
        bits = np.zeros(int(inside.sum()))
        for c, pair in enumerate(pairs):
            joint = np.bincount(pair[mask], minlength=256 * (_CAP + 1) ** c).astype(float)
            totals = joint.reshape(-1, 256).sum(1)
            # half a count for a symbol a context has not seen: a block the fit did not
            # see may still pay
            bits -= np.log2((joint[pair[inside]] + 0.5) / (totals[pair[inside] // 256] + 128))
        cost = np.bincount(block[inside], weights=bits, minlength=blocks) + 1
        kept = candidate & (cost < gain)
        if not kept.any():
            return None
    mask = kept[block]
    data = bytearray(_STEP.pack(step) + np.packbits(kept).tobytes())
    for c in range(3):
        head, string = tables.encode(q[mask, c], _contexts(q[mask], c), signed=True)
        data += _LENGTH.pack(len(head) + len(string)) + head + string
    out = decoded.reshape(-1, 3).copy()
    out[mask] = fixed.reshape(-1, 3)[mask]
    return bytes(data), out.reshape(decoded.shape)


def add(rgb: np.ndarray, data: bytes) -> np.ndarray:
    """``rgb`` (the decoder's ``(H, W, 3)`` uint8 output, snapped and painted) with the
    residual ``data`` added; a new array. :class:`~slimcodec.errors.CorruptBitstreamError`
    where ``data`` is not exactly a residual of an image of this size."""
    if len(data) < _STEP.size:
        raise _corrupt("no step")
    (step,) = _STEP.unpack_from(data)
    if step < MIN_STEP:
        raise _corrupt(f"a step of {step} (at least {MIN_STEP})")
    try:
        mask, head = flagged_pixels(data, _STEP.size, rgb.shape[:2], "no corrected block")
    except ValueError as exc:
        raise _corrupt(str(exc)) from None
    q = np.zeros((int(mask.sum()), 3), np.int8)  # (a byte a symbol: captures are large)
    offset, most = head, -(-255 // step)
    for c, name in enumerate(("red", "green", "blue")):
        if len(data) < offset + _LENGTH.size:
            raise _corrupt(f"the {name} channel cut")
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        if len(data) < offset + length:
            raise _corrupt(f"the {name} channel cut")
        try:
            q[:, c], _ = tables.decode(data[offset:offset + length], 0, _contexts(q, c),
                                       -most, most, signed=True)
        except ValueError as exc:
            raise _corrupt(f"the {name} channel: {exc}") from None
        offset += length
    if offset != len(data):
        raise _corrupt(f"{len(data) - offset} bytes after the blue channel")
    out = rgb.reshape(-1, 3).copy()
    out[mask] = _corrected(out[mask], q, step)
    return out.reshape(rgb.shape)


def _corrupt(what: str) -> CorruptBitstreamError:
    return CorruptBitstreamError(f"corrupt slimcodec file: residual: {what}")
