"""Snapping the decoded image onto the image's own colours: a palette, for screen content.

Text, UI and charts are drawn in a few exact colours. The transforms code their flat areas
closely but blur every edge into colours the image does not hold, and on screens those
edges carry nearly all of the error. An encoder that knows the image's colours can send them: the
file's palette block (``docs/bitstream.md``) holds up to
:data:`~slimcodec.bitstream.container.MAX_PALETTE` colours and a *reach*, and every decoder,
after resizing its output to the image's size, replaces each pixel whose squared RGB
distance to its nearest palette colour (the first of the nearest, in the block's order) is
at most the reach by that colour (:func:`snap`). After the palette modes of screen-content
coders (HEVC SCC, AV1), which code a block as indices into a few colours; here the snap
codes no index: the decoder derives each from its own output, the latent is coded as
before, and the snap costs the decoder one nearest-colour search per pixel, exact in any
arithmetic order, so that both runtimes return the same pixels. Where the snap is wrong
(near an edge of text), the file can also name the colours of whole blocks drawn in the
palette's colours, or within a few levels of them (the blends of anti-aliased text), which
the decoder then paints: the exact blocks of :mod:`slimcodec.index_map`, which
:func:`snap` paints and :func:`with_palette` chooses.

The encoder (:func:`with_palette`, what both runtimes' ``encode_rgb`` end with) tries it
only where the image's :data:`MAX_COLOURS` most frequent colours cover at least
:data:`MIN_COVER` of its pixels (so a photo costs a count of its colours on a sample, no
decode), and then keeps the palette (its most frequent colours :data:`SEPARATION` levels
apart) and reach, among :data:`SIZES` and :data:`REACHES`, with exact blocks or without,
of the lowest RD loss (:func:`~slimcodec.bitstream.rate.rd_loss`, the blocks' bytes
counted), or none; then, with it or without, a residual correcting the blocks still far
off (:mod:`slimcodec.residual`: subpixel text's coloured fringes, which no palette holds)
where one lowers the loss further. A decoder returns :func:`finish`'s image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np

from slimcodec import index_map, residual
from slimcodec.bitstream.container import (
    MAX_PALETTE,
    PALETTE_FULL_REACH,
    Bitstream,
    Header,
    RateKind,
    pack,
    unpack,
)
from slimcodec.bitstream.rate import per_image_pixel, rd_loss
from slimcodec.utils.metrics import psnr

__all__ = ["MAX_COLOURS", "MIN_COVER", "REACHES", "SIZES", "colours_to_try", "finish",
           "frequent_colours", "palette_loss", "snap", "with_palette"]

#: The most colours the encoder sends (the format allows up to ``MAX_PALETTE``).
MAX_COLOURS = 64
#: The share of pixels the ``MAX_COLOURS`` most frequent colours must cover for a palette
#: to be tried.
MIN_COVER = 0.5
#: The palette sizes tried: the image's most frequent colours, as many (or all it has).
SIZES = (8, 16, 32, MAX_COLOURS)
#: The colours sent are at least this many levels apart in some channel. Anti-aliased
#: text blends each pair of colours into hundreds a level or two apart; a palette of the
#: most frequent of those would crowd out the rest, and a decoder a level off would often
#: read another nearest colour, so that no block of them could be exact. Colours this far
#: apart stay their own nearest for a decoder :data:`~slimcodec.index_map.TOLERANCE`
#: levels off (Σ δ(δ − 4) > 0 for a difference δ with a channel of 8 or more), and exact
#: blocks paint each blend between them with its nearest (:data:`slimcodec.index_map.NEAR`).
SEPARATION = 8
#: A colour covering at least this share of the image is kept however near a more
#: frequent one, where a decoder :data:`~slimcodec.index_map.TOLERANCE` levels off still
#: reads each of the two as its own nearest: UI themes set near-identical greys side by
#: side (zebra rows #FAFAFA on #FFFFFF, 5 levels apart), which snapped or painted as the
#: other would decode 5 levels off over large areas; no blend of text is this frequent.
COMMON = 0.01
#: How many of the most frequent colours :data:`SEPARATION` chooses among.
_CONSIDERED = 4096
#: The reaches tried: a pixel within 8, 16, ... 96 levels per channel of a palette colour
#: (3·8², ...), or every pixel.
REACHES = (*(3 * step**2 for step in (8, 16, 24, 32, 48, 64, 96)), PALETTE_FULL_REACH)
#: The palette block's bytes besides its colours: the count and the reach.
_PALETTE_HEAD = 5
#: The index-map block's bytes besides the map: its length; the residual block's, too.
_MAP_HEAD = _RESIDUAL_HEAD = 4
#: Every ``_SAMPLE``-th pixel counts towards the cover test.
_SAMPLE = 7
#: Pixels per block of the snap (bounds its index and distance arrays).
_BLOCK = 1 << 14
assert MAX_COLOURS <= MAX_PALETTE


def _keys(pixels: np.ndarray) -> np.ndarray:
    """``(N, 3)`` uint8 pixels as one integer each, 0xRRGGBB."""
    p = pixels.astype(np.uint32)
    return (p[:, 0] << 16) | (p[:, 1] << 8) | p[:, 2]


def frequent_colours(rgb: np.ndarray, count: int, separation: int = 0,
                     common: float = 1.0) -> np.ndarray:
    """``rgb``'s ``count`` most frequent colours (all it has where fewer), ``(k, 3)`` uint8,
    the most frequent first (ties: the lower 0xRRGGBB first), each at least
    ``separation`` levels in some channel from every more frequent one kept (of the
    :data:`_CONSIDERED` most frequent), or, where it covers at least the share ``common``
    of the pixels, far enough from each for both to stay their own nearest for a decoder
    :data:`~slimcodec.index_map.TOLERANCE` levels off (``Σ|δ|(|δ| − 2·TOLERANCE) > 0``
    over the channels' differences ``δ``)."""
    keys, counts = np.unique(_keys(rgb.reshape(-1, 3)), return_counts=True)
    order = np.argsort(-counts, kind="stable")[:count if not separation else _CONSIDERED]
    top, frequent = keys[order], counts[order] >= common * rgb[..., 0].size
    colours = np.stack([(top >> 16) & 255, (top >> 8) & 255, top & 255], 1).astype(np.int16)
    if separation:
        kept: list[int] = []
        for i, colour in enumerate(colours):
            delta = np.abs(colours[kept] - colour).astype(np.int64)
            if (not kept or delta.max(1).min() >= separation or (frequent[i] and (
                    delta * (delta - 2 * index_map.TOLERANCE)).sum(1).min() > 0)):
                kept.append(i)
                if len(kept) == count:
                    break
        colours = colours[kept]
    return colours.astype(np.uint8)


def _covered(rgb: np.ndarray) -> bool:
    """Whether the ``MAX_COLOURS`` most frequent colours of a sample of ``rgb``'s pixels
    cover at least ``MIN_COVER`` of it."""
    sample = rgb.reshape(-1, 3)[::_SAMPLE]
    _, counts = np.unique(_keys(sample), return_counts=True)
    return np.sort(counts)[::-1][:MAX_COLOURS].sum() >= MIN_COVER * len(sample)


def _snapped(rgb: np.ndarray, colours: np.ndarray, index: np.ndarray, distance: np.ndarray,
             reach: int) -> np.ndarray:
    out = rgb.reshape(-1, 3).copy()
    near = distance <= reach
    out[near] = colours[index[near]]
    return out.reshape(rgb.shape)


def snap(rgb: np.ndarray, header: Header) -> np.ndarray:
    """What a decoder returns of its ``(H, W, 3)`` uint8 output ``rgb`` for a file with
    ``header``: each pixel within the palette's reach of its nearest palette colour
    replaced by that colour, then the exact blocks of its index map, if it has one,
    painted (:func:`slimcodec.index_map.paint`); ``rgb`` itself where the file has no
    palette. Block by block: beside the image's copy, its temporaries are a block's."""
    if not header.palette:
        return rgb
    colours = np.asarray(header.palette, np.uint8)
    out = rgb.copy()
    flat = out.reshape(-1, 3)
    for start in range(0, len(flat), _BLOCK):
        where = slice(start, start + _BLOCK)
        index, distance = index_map.nearest_and_distance(rgb.reshape(-1, 3)[where], colours)
        near = distance <= header.palette_reach
        flat[where][near] = colours[index[near]]
    if header.index_map:
        return index_map.paint(out, colours, header.index_map)
    return out


def finish(rgb: np.ndarray, header: Header) -> np.ndarray:
    """What a decoder returns of its ``(H, W, 3)`` uint8 output ``rgb``, resized to the
    image's size, for a file with ``header``: :func:`snap`'s, then the residual, if the file
    has one, added (:func:`slimcodec.residual.add`)."""
    out = snap(rgb, header)
    return residual.add(out, header.residual) if header.residual else out


def colours_to_try(rgb: np.ndarray) -> np.ndarray | None:
    """``rgb``'s most frequent colours :data:`SEPARATION` apart (but for those of a
    :data:`COMMON` share), the most frequent first, as many as the largest of
    :data:`SIZES`, where its most frequent cover enough of it to try a palette
    (:data:`MIN_COVER`, on a sample); else None (photos)."""
    return frequent_colours(rgb, max(SIZES), SEPARATION, COMMON) if _covered(rgb) else None


class _Extras(NamedTuple):
    """What the encoder adds to a file: the palette's colours (none: empty) and reach, the
    index map's and the residual's bytes (none: empty), and the image it then decodes to."""

    colours: np.ndarray
    reach: int
    image: np.ndarray
    index_map: bytes = b""
    residual: bytes = b""

    @property
    def size(self) -> int:
        """The bytes they add to the file."""
        return ((_PALETTE_HEAD + 3 * len(self.colours) if len(self.colours) else 0)
                + (_MAP_HEAD + len(self.index_map) if self.index_map else 0)
                + (_RESIDUAL_HEAD + len(self.residual) if self.residual else 0))


def _best(original: np.ndarray, decoded: np.ndarray, nbytes: int, lmbda: float | None,
          ranked: np.ndarray) -> tuple[float, _Extras | None]:
    """The lowest loss of a file of ``original`` of ``nbytes`` that decodes to ``decoded``:
    as it is, or with each palette of :data:`SIZES` of the colours ``ranked`` at its best
    of :data:`REACHES`, or with its index map (:func:`slimcodec.index_map.plan`) at that
    reach or the full one, where one pays (the blocks' bytes counted), then with a residual
    (:func:`slimcodec.residual.plan`) of the step of :func:`~slimcodec.residual.steps`
    that pays most, if one pays: RD loss at ``lmbda``, or the mean squared error where it
    is None (and then neither index map nor residual: their bits cannot be weighed); and
    what the encoder adds for it, None where that is nothing."""

    def loss(extras: _Extras | None) -> float:
        image = decoded if extras is None else extras.image
        if lmbda is None:
            return float(np.mean((image.astype(np.float64) - original) ** 2))
        return rd_loss(original, image, nbytes + (extras.size if extras else 0), lmbda)

    best: tuple[float, _Extras | None] = (loss(None), None)
    sizes: set[int] = set()
    for size in SIZES:
        colours = ranked[:size]
        if len(colours) in sizes:  # (an image of fewer colours than the size)
            continue
        sizes.add(len(colours))
        nearest = index_map.nearest_and_distance(decoded.reshape(-1, 3), colours)
        own: tuple[float, _Extras] | None = None
        for reach in REACHES:  # (one snapped image kept at a time: they are image-sized)
            extras = _Extras(colours, reach, _snapped(decoded, colours, *nearest, reach))
            tried = loss(extras)
            if own is None or tried < own[0]:
                own = (tried, extras)
        assert own is not None
        # with exact blocks: at the reach of the lowest loss without, and at the full
        # reach, which snaps every pixel far from a tie (so every block can be exact)
        plain = own[1]
        for reach in dict.fromkeys((plain.reach, PALETTE_FULL_REACH)) if lmbda else ():
            snapped = (plain.image if reach == plain.reach
                       else _snapped(decoded, colours, *nearest, reach))
            mapped = index_map.plan(original, snapped, colours, lmbda)
            if mapped is not None:
                extras = _Extras(colours, reach, mapped[1], mapped[0])
                tried = loss(extras)
                if tried < own[0]:
                    own = (tried, extras)
        if own[0] < best[0]:
            best = own
    if lmbda is not None:
        base = best[1] or _Extras(np.zeros((0, 3), np.uint8), 0, decoded)
        for step in residual.steps(lmbda):
            planned = residual.plan(original, base.image, lmbda, step)
            if planned is not None:
                extras = base._replace(image=planned[1], residual=planned[0])
                tried = loss(extras)
                if tried < best[0]:
                    best = (tried, extras)
    return best


def palette_loss(original: np.ndarray, decoded: np.ndarray, nbytes: int, lmbda: float,
                 ranked: np.ndarray) -> float:
    """The RD loss at ``lmbda`` of a file of ``original`` of ``nbytes`` that decodes to
    ``decoded``, as the encoder sends it: with the palette of the colours ``ranked``
    (:func:`colours_to_try`) of the lowest loss, or none, and the residual that lowers it
    further, if one does (:func:`_best`). What
    :func:`~slimcodec.scaling.choose_scale` weighs a candidate by where the encoder sends
    a palette."""
    return _best(original, decoded, nbytes, lmbda, ranked)[0]


def with_palette(data: bytes, rgb: np.ndarray,
                 decode: Callable[[bytes], tuple[np.ndarray, Header]],
                 weight: Callable[[int, float | None], float | None],
                 report: dict[str, Any] | None = None) -> bytes:
    """``data``, a file of ``rgb``, with the palette (of ``rgb``'s most frequent colours),
    reach, exact blocks (:mod:`slimcodec.index_map`) and residual (:mod:`slimcodec.residual`)
    of the lowest RD loss where one lowers it below the file's own, else ``data``.
    ``weight(width, λ)``: the RD weight of a file at that width and λ (None for a
    single-rate model's), per pixel of the image as the file's coded size makes it
    (:func:`~slimcodec.bitstream.rate.per_image_pixel`); where there is none, the palette
    is chosen by distortion alone, without exact blocks or residual. ``report``: its
    ``palette`` (colours kept, 0 for none), ``index_map`` (the exact blocks' bytes, 0 for
    none) and ``residual`` (its bytes, 0 for none), and its ``psnr`` and
    ``psnr_predicted``, where present, made the sent file's."""
    if report is not None:
        report.update(palette=0, index_map=0, residual=0)
    ranked = colours_to_try(rgb)
    if ranked is None:
        return data
    decoded, header = decode(data)
    lmbda = weight(header.width, header.rate if header.rate_kind == RateKind.LAMBDA else None)
    if lmbda is not None:
        lmbda = per_image_pixel(lmbda, header.image_size, header.coded_size)
    _, chosen = _best(rgb, decoded, len(data), lmbda, ranked)
    if chosen is None:
        return data
    header = replace(header, palette=tuple(map(tuple, chosen.colours.tolist())),
                     palette_reach=chosen.reach, index_map=chosen.index_map,
                     residual=chosen.residual)
    if report is not None:
        report.update(palette=len(chosen.colours), index_map=len(chosen.index_map),
                      residual=len(chosen.residual))
        measured = [k for k in ("psnr", "psnr_predicted") if k in report]
        if measured:
            report.update(dict.fromkeys(measured, psnr(rgb, chosen.image)))
    return pack(Bitstream(header, unpack(data).strings))
