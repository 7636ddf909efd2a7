"""The slimcodec container: a small header, the entropy-coded strings and a CRC-32.

The byte layout is specified in ``docs/bitstream.md``; this module is its only reader and
writer. Parsing checks, in order: magic, version, that the lengths add up to the file size
(truncated / trailing bytes), the CRC, then each field's range. Every failure raises a
:class:`~slimcodec.errors.BitstreamError` subclass; nothing else escapes :func:`unpack`.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass

from slimcodec.errors import (
    CorruptBitstreamError,
    NotASlimcodecFileError,
    TruncatedBitstreamError,
    UnsupportedVersionError,
)

__all__ = [
    "FINGERPRINT_SIZE",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_CODING_SCALE",
    "MAX_IMAGE_SIDE",
    "MAX_MIXTURE",
    "MAX_PALETTE",
    "MIXTURE_UNIT",
    "PALETTE_FULL_REACH",
    "RESAMPLING",
    "Bitstream",
    "Header",
    "RateKind",
    "domain_id",
    "pack",
    "unpack",
]

MAGIC = b"SLMC"
FORMAT_VERSION = 1
FINGERPRINT_SIZE = 8
# Largest image side a container may declare: bounds the memory a crafted header can ask for.
MAX_IMAGE_SIDE = 1 << 15
MAX_STRINGS = 255

# magic, version, flags, fingerprint, width, rate kind, rate, domain, height, width, n strings
_FIXED = struct.Struct("<4sBB8sHB4sHIIB")
_LENGTH = struct.Struct("<I")
_CRC = struct.Struct("<I")
_FLAG_GRAYSCALE = 0x01
_FLAG_MIXTURE = 0x02
_FLAG_CODED_SIZE = 0x04
_FLAG_PALETTE = 0x08
_FLAG_INDEX_MAP = 0x10
_FLAG_RESIDUAL = 0x20
_KNOWN_FLAGS = (_FLAG_GRAYSCALE | _FLAG_MIXTURE | _FLAG_CODED_SIZE | _FLAG_PALETTE
                | _FLAG_INDEX_MAP | _FLAG_RESIDUAL)
# The optional mixture block (flag bit 1), right after the fixed header: a count, then per
# member its domain id and its weight in 1/64ths (exact in binary floating point, so every
# decoder applies the same weights).
_MIXTURE_COUNT = struct.Struct("<B")
_MIXTURE_MEMBER = struct.Struct("<HB")
_CODED_SIZE = struct.Struct("<IIB")
# The optional palette block (flag bit 3), after the coded-size block: the colour count less
# one (so its length is bounded by this byte, read before the CRC), the reach, the colours.
_PALETTE_HEAD = struct.Struct("<BI")
_PALETTE_COLOUR = struct.Struct("<BBB")
# The optional index-map block (flag bit 4, with a palette), after the palette block, and
# the optional residual block (flag bit 5) after it: each its length, then its bytes
# (:mod:`slimcodec.index_map` and :mod:`slimcodec.residual` read them).
_BLOCK_LENGTH = struct.Struct("<I")
#: Most colours a palette block holds.
MAX_PALETTE = 256
#: A palette's reach that snaps every pixel: the squared distance of black to white.
PALETTE_FULL_REACH = 3 * 255**2
#: How far a coded side may exceed the image's (the encoder's ``scale``, at most).
MAX_CODING_SCALE = 4
#: The coded-size block's resampling filters, by id: how a decoder resizes its output to
#: the image's size (:mod:`slimcodec.scaling` says how the encoder upsampled).
RESAMPLING = ("lanczos", "box")
MIXTURE_UNIT = 64
MAX_MIXTURE = 8


class RateKind(enum.IntEnum):
    """How the rate field is to be read."""

    NONE = 0  #: single-rate model: the width alone sets the rate
    INDEX = 1  #: index into the model's table of rate settings (u32)
    LAMBDA = 2  #: the rate-distortion weight λ itself (f32)


@dataclass(frozen=True)
class Header:
    """Everything needed, besides the model, to decode the strings.

    Attributes:
        fingerprint: 8 bytes identifying the model that wrote the file
            (:func:`slimcodec.zoo.fingerprint`).
        width: the network width (channels) the image was coded at.
        image_size: ``(height, width)`` of the original image, in pixels.
        grayscale: the source was single-channel; decoders return a one-channel image.
        rate_kind, rate: the rate setting for variable-rate models (see :class:`RateKind`).
        domain: 0 for the source codec, else the id of the domain adapter used (with a
            mixture: the one whose entropy models coded the latent, 0 for the source's).
        mixture: decoder adapters mixed by the encoder's gate, ``(domain id, weight)``
            pairs, each weight a multiple of 1/:data:`MIXTURE_UNIT` in [0, 255/64], the
            coding domain among them (at weight 0 if it does not decode); empty for a file
            of one domain.
        coded_size: ``(height, width)`` of the image the transforms coded, where the
            encoder upsampled the original (``scale``): each side at least the image's and
            at most :data:`MAX_CODING_SCALE` times it, not both equal; the decoder
            resamples its output to ``image_size``. None: the original itself.
        resampling: with a coded size, the filter the decoder resamples with, an index
            into :data:`RESAMPLING`; 0 without one.
        palette: ``(r, g, b)`` colours, distinct, at most :data:`MAX_PALETTE`, onto which
            the decoder snaps its output (:mod:`slimcodec.palette`); empty: none.
        palette_reach: with a palette, the largest squared RGB distance from a decoded
            pixel to its nearest palette colour at which it is snapped, 1 to
            :data:`PALETTE_FULL_REACH` (every pixel); 0 without one.
        index_map: with a palette, the blocks the decoder paints exactly in the palette's
            colours, as :mod:`slimcodec.index_map` codes them; empty: none.
        residual: the correction the decoder adds to blocks of its output, last, as
            :mod:`slimcodec.residual` codes it; empty: none.
    """

    fingerprint: bytes
    width: int
    image_size: tuple[int, int]
    grayscale: bool = False
    rate_kind: RateKind = RateKind.NONE
    rate: float = 0.0
    domain: int = 0
    mixture: tuple[tuple[int, float], ...] = ()
    coded_size: tuple[int, int] | None = None
    resampling: int = 0
    palette: tuple[tuple[int, int, int], ...] = ()
    palette_reach: int = 0
    index_map: bytes = b""
    residual: bytes = b""

    @property
    def coded(self) -> tuple[int, int]:
        """``(height, width)`` of the image the latent codes: :attr:`coded_size`, or the
        image's own."""
        return self.coded_size or self.image_size

    def __post_init__(self) -> None:
        if len(self.fingerprint) != FINGERPRINT_SIZE:
            raise ValueError(f"fingerprint must be {FINGERPRINT_SIZE} bytes")
        if not 0 < self.width < 1 << 16:
            raise ValueError(f"width {self.width} out of range")
        h, w = self.image_size
        if not (0 < h <= MAX_IMAGE_SIDE and 0 < w <= MAX_IMAGE_SIDE):
            raise ValueError(f"image size {h}x{w} out of range (1..{MAX_IMAGE_SIDE} per side)")
        if not 0 <= self.domain < 1 << 16:
            raise ValueError(f"domain {self.domain} out of range")
        if self.rate_kind == RateKind.LAMBDA and not 0 < self.rate < float("inf"):
            raise ValueError(f"λ {self.rate} is not a positive finite number")
        if self.rate_kind == RateKind.INDEX and not (
            float(self.rate).is_integer() and 0 <= self.rate < 1 << 32
        ):
            raise ValueError(f"rate index {self.rate} is not a u32")
        if len(self.mixture) > MAX_MIXTURE:
            raise ValueError(f"a mixture of {len(self.mixture)} domains (at most {MAX_MIXTURE})")
        ids = [d for d, _ in self.mixture]
        if len(set(ids)) != len(ids):
            raise ValueError("a domain appears twice in the mixture")
        for d, weight in self.mixture:
            units = weight * MIXTURE_UNIT
            if not (0 < d < 1 << 16 and float(units).is_integer() and 0 <= units < 256):
                raise ValueError(f"mixture member ({d}, {weight}) out of range")
        if self.mixture and self.domain not in (0, *ids):
            raise ValueError(f"domain {self.domain} is not one of the mixture's")
        if self.coded_size is not None:
            ch, cw = self.coded_size
            if not (h <= ch <= min(MAX_CODING_SCALE * h, MAX_IMAGE_SIDE)
                    and w <= cw <= min(MAX_CODING_SCALE * w, MAX_IMAGE_SIDE)):
                raise ValueError(f"coded size {ch}x{cw} for a {h}x{w} image (each side "
                                 f"1..{MAX_CODING_SCALE}x the image's, at most "
                                 f"{MAX_IMAGE_SIDE})")
            if (ch, cw) == (h, w):
                raise ValueError("a coded size equal to the image's (written as none)")
        if not 0 <= self.resampling < (len(RESAMPLING) if self.coded_size else 1):
            raise ValueError(f"resampling filter {self.resampling} "
                             + ("unknown" if self.coded_size else "without a coded size"))
        if len(self.palette) > MAX_PALETTE:
            raise ValueError(f"a palette of {len(self.palette)} colours (at most {MAX_PALETTE})")
        if any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in self.palette):
            raise ValueError("a palette colour is not three 8-bit values")
        if len(set(self.palette)) != len(self.palette):
            raise ValueError("a colour appears twice in the palette")
        if not (0 < self.palette_reach <= PALETTE_FULL_REACH if self.palette
                else self.palette_reach == 0):
            raise ValueError(f"palette reach {self.palette_reach} " + (
                f"out of range (1..{PALETTE_FULL_REACH})" if self.palette
                else "without a palette"))
        if self.index_map and not self.palette:
            raise ValueError("an index map without a palette")


@dataclass(frozen=True)
class Bitstream:
    """A parsed container: the header and the entropy-coded strings, in order."""

    header: Header
    strings: tuple[bytes, ...]


def domain_id(name: str) -> int:
    """The domain field's id for a domain adapter's name: 1..65535, from its CRC-32 (0 is the
    model alone)."""
    if not name:
        raise ValueError("a domain needs a name")
    return zlib.crc32(name.encode()) % 65535 + 1


def _pack_rate(kind: RateKind, rate: float) -> bytes:
    if kind == RateKind.LAMBDA:
        return struct.pack("<f", rate)
    if kind == RateKind.INDEX:
        return struct.pack("<I", int(rate))
    return bytes(4)


def pack(bitstream: Bitstream) -> bytes:
    """Serialise a :class:`Bitstream` to bytes."""
    h, strings = bitstream.header, bitstream.strings
    if not 1 <= len(strings) <= MAX_STRINGS:
        raise ValueError(f"a container holds 1..{MAX_STRINGS} strings, got {len(strings)}")
    out = bytearray(
        _FIXED.pack(
            MAGIC,
            FORMAT_VERSION,
            (_FLAG_GRAYSCALE if h.grayscale else 0) | (_FLAG_MIXTURE if h.mixture else 0)
            | (_FLAG_CODED_SIZE if h.coded_size else 0) | (_FLAG_PALETTE if h.palette else 0)
            | (_FLAG_INDEX_MAP if h.index_map else 0) | (_FLAG_RESIDUAL if h.residual else 0),
            h.fingerprint,
            h.width,
            int(h.rate_kind),
            _pack_rate(h.rate_kind, h.rate),
            h.domain,
            h.image_size[0],
            h.image_size[1],
            len(strings),
        )
    )
    if h.mixture:
        out += _MIXTURE_COUNT.pack(len(h.mixture))
        for d, weight in h.mixture:
            out += _MIXTURE_MEMBER.pack(d, int(weight * MIXTURE_UNIT))
    if h.coded_size:
        out += _CODED_SIZE.pack(*h.coded_size, h.resampling)
    if h.palette:
        out += _PALETTE_HEAD.pack(len(h.palette) - 1, h.palette_reach)
        for colour in h.palette:
            out += _PALETTE_COLOUR.pack(*colour)
    if h.index_map:
        out += _BLOCK_LENGTH.pack(len(h.index_map)) + h.index_map
    if h.residual:
        out += _BLOCK_LENGTH.pack(len(h.residual)) + h.residual
    for s in strings:
        out += _LENGTH.pack(len(s))
    for s in strings:
        out += s
    out += _CRC.pack(zlib.crc32(out))
    return bytes(out)


def _sized(data: bytes, start: int, present: int, what: str) -> tuple[int, int]:
    """The length of the block ``what`` that starts at ``start`` with it (0 where the block
    is not ``present``), and where the next starts."""
    if not present:
        return 0, start
    if len(data) < start + _BLOCK_LENGTH.size:
        raise TruncatedBitstreamError(f"truncated slimcodec file: {what} cut")
    (length,) = _BLOCK_LENGTH.unpack_from(data, start)
    return length, start + _BLOCK_LENGTH.size + length


def unpack(data: bytes) -> Bitstream:
    """Parse and validate a container. Raises a ``BitstreamError`` subclass on bad input."""
    data = bytes(data)
    if data[: len(MAGIC)] != MAGIC[: len(data)]:
        raise NotASlimcodecFileError("not a slimcodec file (bad magic bytes)")
    if len(data) < len(MAGIC) + 1:
        raise TruncatedBitstreamError(f"truncated slimcodec file ({len(data)} bytes)")
    version = data[len(MAGIC)]
    if version != FORMAT_VERSION:
        raise UnsupportedVersionError(
            f"unsupported container version {version} (this slimcodec reads version "
            f"{FORMAT_VERSION}; the file is corrupt or from a newer slimcodec)"
        )
    if len(data) < _FIXED.size:
        raise TruncatedBitstreamError(f"truncated slimcodec file: header cut at {len(data)} bytes")
    (_, _, flags, fingerprint, width, rate_kind, rate_raw, domain, height, img_width, n) = (
        _FIXED.unpack_from(data)
    )
    # The mixture block's length is read before the CRC is checked, so it is bounded first.
    lengths_start, members = _FIXED.size, 0
    if flags & _FLAG_MIXTURE:
        if len(data) < _FIXED.size + _MIXTURE_COUNT.size:
            raise TruncatedBitstreamError("truncated slimcodec file: mixture block cut")
        (members,) = _MIXTURE_COUNT.unpack_from(data, _FIXED.size)
        lengths_start += _MIXTURE_COUNT.size + members * _MIXTURE_MEMBER.size
    coded_start = lengths_start
    if flags & _FLAG_CODED_SIZE:
        lengths_start += _CODED_SIZE.size
    palette_start, colours = lengths_start, 0
    if flags & _FLAG_PALETTE:  # its length, like the mixture's, read before the CRC
        if len(data) < palette_start + _PALETTE_HEAD.size:
            raise TruncatedBitstreamError("truncated slimcodec file: palette block cut")
        colours = data[palette_start] + 1
        lengths_start += _PALETTE_HEAD.size + colours * _PALETTE_COLOUR.size
    # the index map's and the residual's lengths, too, read before the CRC: bounded below
    map_start = lengths_start
    map_length, lengths_start = _sized(data, map_start, flags & _FLAG_INDEX_MAP, "index map")
    residual_start = lengths_start
    residual_length, lengths_start = _sized(data, residual_start, flags & _FLAG_RESIDUAL,
                                            "residual")
    lengths_end = lengths_start + n * _LENGTH.size
    if len(data) < lengths_end + _CRC.size:
        raise TruncatedBitstreamError(
            f"truncated slimcodec file: {len(data)} bytes, header alone needs "
            f"{lengths_end + _CRC.size}"
        )
    lengths = [_LENGTH.unpack_from(data, lengths_start + i * _LENGTH.size)[0]
               for i in range(n)]
    expected = lengths_end + sum(lengths) + _CRC.size
    if len(data) < expected:
        raise TruncatedBitstreamError(
            f"truncated slimcodec file: {len(data)} bytes of the {expected} its header declares"
        )
    if len(data) > expected:
        raise CorruptBitstreamError(
            f"corrupt slimcodec file: {len(data) - expected} unexpected bytes after the end"
        )
    (crc,) = _CRC.unpack_from(data, expected - _CRC.size)
    if zlib.crc32(data[: expected - _CRC.size]) != crc:
        raise CorruptBitstreamError("corrupt slimcodec file: CRC-32 mismatch")

    # The CRC matched, so a bad field now means a buggy or hostile writer, not line noise.
    if flags & ~_KNOWN_FLAGS:
        raise CorruptBitstreamError(f"corrupt slimcodec file: unknown flags 0x{flags:02x}")
    try:
        kind = RateKind(rate_kind)
        if kind == RateKind.LAMBDA:
            (rate,) = struct.unpack("<f", rate_raw)
        else:
            (rate,) = struct.unpack("<I", rate_raw)
        if kind == RateKind.NONE and rate_raw != bytes(4):
            raise ValueError("rate kind 0 (none) with non-zero rate bytes")
        mixture = []
        for i in range(members):
            d, units = _MIXTURE_MEMBER.unpack_from(
                data, _FIXED.size + _MIXTURE_COUNT.size + i * _MIXTURE_MEMBER.size)
            mixture.append((d, units / MIXTURE_UNIT))
        if flags & _FLAG_MIXTURE and not mixture:
            raise ValueError("an empty mixture")
        if flags & _FLAG_INDEX_MAP and not map_length:
            raise ValueError("an empty index map")
        if flags & _FLAG_RESIDUAL and not residual_length:
            raise ValueError("an empty residual")
        coded_size, resampling = None, 0
        if flags & _FLAG_CODED_SIZE:
            *coded_size, resampling = _CODED_SIZE.unpack_from(data, coded_start)
            coded_size = tuple(coded_size)
        reach = 0
        if colours:
            reach = _PALETTE_HEAD.unpack_from(data, palette_start)[1]
        palette = tuple(_PALETTE_COLOUR.unpack_from(
            data, palette_start + _PALETTE_HEAD.size + i * _PALETTE_COLOUR.size)
            for i in range(colours))
        header = Header(
            fingerprint=fingerprint,
            width=width,
            image_size=(height, img_width),
            grayscale=bool(flags & _FLAG_GRAYSCALE),
            rate_kind=kind,
            rate=float(rate),
            domain=domain,
            mixture=tuple(mixture),
            coded_size=coded_size,
            resampling=resampling,
            palette=palette,
            palette_reach=reach,
            index_map=data[map_start + _BLOCK_LENGTH.size:
                           map_start + _BLOCK_LENGTH.size + map_length],
            residual=data[residual_start + _BLOCK_LENGTH.size:
                          residual_start + _BLOCK_LENGTH.size + residual_length],
        )
        if n == 0:
            raise ValueError("no entropy-coded strings")
    except ValueError as exc:
        raise CorruptBitstreamError(f"corrupt slimcodec file: {exc}") from None
    strings, offset = [], lengths_end
    for length in lengths:
        strings.append(data[offset : offset + length])
        offset += length
    return Bitstream(header, tuple(strings))
