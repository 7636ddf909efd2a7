"""Entropy coding of a quantised latent: CompressAI's rANS format, bounds-checked.

The strings are byte for byte those of CompressAI's ``RangeEncoder.encode_with_indexes``
with one CDF per channel (a factorized entropy model), so files written by either coder
decode with the other. The decoder is our own (``_rans.c``): CompressAI's trusts its
input, and a crafted string makes it read past its end or loop as long as the data says.
Here every failure is a :class:`~slimcodec.errors.CorruptBitstreamError`:

* the string runs out before the latent is complete, or goes on after it;
* a bypass run is longer than a 32-bit value;
* the string does not end in the encoder's initial state (a damaged or foreign string).

This module needs numpy alone (no torch), so the edge runtime decodes with it too. Where the
compiled coder is missing, a pure-Python coder of the same format is used (slow:
about a microsecond per symbol); :data:`COMPILED` says which.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slimcodec.errors import CorruptBitstreamError

try:
    from slimcodec.bitstream import _rans
except ImportError:  # no compiler where it was installed: the reference coder below
    _rans = None

__all__ = ["COMPILED", "PRECISION", "EntropyTables", "decode", "encode"]

COMPILED = _rans is not None
PRECISION = 16
_BYPASS_BITS, _BYPASS_MAX, _MAX_NIBBLES = 4, 15, 8
_L = 1 << 31
_MASK = (1 << PRECISION) - 1


@dataclass(frozen=True)
class EntropyTables:
    """One quantised CDF per channel, as compressai's ``EntropyBottleneck`` keeps them.

    Attributes:
        cdfs: ``(C, L)`` int32; row ``c`` holds ``lengths[c]`` values rising strictly from
            0 to ``2**16``.
        lengths: ``(C,)`` int32.
        offsets: ``(C,)`` int32, the symbol of each CDF's first entry.
    """

    cdfs: np.ndarray
    lengths: np.ndarray
    offsets: np.ndarray

    def __post_init__(self) -> None:
        for name in ("cdfs", "lengths", "offsets"):
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name),
                                                                dtype=np.int32))
        cdfs, lengths, offsets = self.cdfs, self.lengths, self.offsets
        if cdfs.ndim != 2 or lengths.shape != (len(cdfs),) or offsets.shape != (len(cdfs),):
            raise ValueError("cdfs must be (C, L), lengths and offsets (C,)")
        if len(cdfs) == 0:
            raise ValueError("no CDFs")
        if lengths.min() < 2 or lengths.max() > cdfs.shape[1]:
            raise ValueError("CDF lengths out of range")
        for c in range(len(cdfs)):
            row = cdfs[c, : lengths[c]]
            if row[0] != 0 or row[-1] != 1 << PRECISION or np.any(np.diff(row) <= 0):
                raise ValueError(f"CDF {c} is not a strictly increasing 16-bit CDF")

    @property
    def channels(self) -> int:
        return len(self.cdfs)


def encode(symbols: np.ndarray, tables: EntropyTables, indexes: np.ndarray | None = None
           ) -> bytes:
    """Code a ``(C, H, W)`` integer latent, channel ``c`` with CDF ``c``, or, given
    ``indexes`` (the latent's shape, each in ``[0, len(tables.cdfs))``; uint8 is read as it
    is, any other integer type as int32), each element with CDF ``indexes[c, h, w]`` (a
    conditional model: one table per predicted scale)."""
    symbols = np.ascontiguousarray(symbols, dtype=np.int32)
    plane = _plane(symbols.shape, tables, indexes)
    flat = _flat_indexes(indexes, symbols.shape, tables)
    if _rans is not None:
        return _rans.encode(symbols.reshape(-1), tables.cdfs, tables.lengths, tables.offsets,
                            plane, flat)
    return _encode_py(symbols.reshape(-1), tables, plane, flat)


def decode(data: bytes, tables: EntropyTables, shape: tuple[int, int, int],
           indexes: np.ndarray | None = None) -> np.ndarray:
    """Decode a ``(C, H, W)`` int32 latent (with ``indexes`` as :func:`encode` took them);
    :class:`CorruptBitstreamError` if ``data`` is not exactly the coding of one."""
    out = np.empty(shape, dtype=np.int32)
    plane = _plane(out.shape, tables, indexes)
    flat = _flat_indexes(indexes, out.shape, tables)
    try:
        if _rans is not None:
            _rans.decode(bytes(data), tables.cdfs, tables.lengths, tables.offsets, plane,
                         out.reshape(-1), flat)
        else:
            _decode_py(bytes(data), tables, plane, out.reshape(-1), flat)
    except ValueError as exc:
        raise CorruptBitstreamError(f"corrupt slimcodec file: {exc}") from None
    return out


def _plane(shape: tuple[int, ...], tables: EntropyTables, indexes: np.ndarray | None) -> int:
    if len(shape) != 3 or min(shape) < 1 or (indexes is None and shape[0] != tables.channels):
        raise ValueError(f"latent shape {shape} does not fit {tables.channels} CDFs")
    return shape[1] * shape[2]


def _flat_indexes(indexes: np.ndarray | None, shape: tuple[int, ...], tables: EntropyTables
                  ) -> np.ndarray | None:
    if indexes is None:
        return None
    if indexes.shape != tuple(shape):
        raise ValueError(f"indexes of shape {indexes.shape} for a latent of shape {shape}")
    # uint8 indexes are coded as they are: a latent's worth held whole is a quarter of int32's
    dtype = np.uint8 if indexes.dtype == np.uint8 else np.int32
    flat = np.ascontiguousarray(indexes, dtype=dtype).reshape(-1)
    if flat.min() < 0 or flat.max() >= tables.channels:
        raise ValueError(f"indexes outside [0, {tables.channels})")
    return flat


# -- the reference coder (pure Python; the same format, the same checks) ------------------


def _encode_py(symbols: np.ndarray, t: EntropyTables, plane: int,
               indexes: np.ndarray | None = None) -> bytes:
    words: list[int] = []
    x = _L

    def renormalize(freq: int) -> None:
        nonlocal x
        if x >= ((_L >> PRECISION) << 32) * freq:
            words.append(x & 0xFFFFFFFF)
            x >>= 32

    def put(start: int, freq: int) -> None:
        nonlocal x
        renormalize(freq)
        x = ((x // freq) << PRECISION) + (x % freq) + start

    def put_nibble(val: int) -> None:  # as a symbol of frequency 2^12, coded raw
        nonlocal x
        renormalize(1 << (PRECISION - _BYPASS_BITS))
        x = (x << _BYPASS_BITS) | val

    for i in range(len(symbols) - 1, -1, -1):
        k = int(indexes[i]) if indexes is not None else i // plane
        cdf, max_value = t.cdfs[k], int(t.lengths[k]) - 2
        value = int(symbols[i]) - int(t.offsets[k])
        if value < 0 or value >= max_value:
            raw = -2 * value - 1 if value < 0 else 2 * (value - max_value)
            if raw > 0x7FFFFFFF:
                raise ValueError("symbol too far outside its CDF's range")
            nibbles = 0
            while raw >> (nibbles * _BYPASS_BITS):
                nibbles += 1
            for j in range(nibbles - 1, -1, -1):
                put_nibble((raw >> (j * _BYPASS_BITS)) & _BYPASS_MAX)
            rest = nibbles
            while rest >= _BYPASS_MAX:
                rest -= _BYPASS_MAX
                put_nibble(_BYPASS_MAX)
            put_nibble(rest)
            value = max_value
        start = int(cdf[value])
        put(start, int(cdf[value + 1]) - start)
    words += [x >> 32, x & 0xFFFFFFFF]  # reversed below: low word first
    return np.array(words[::-1], dtype="<u4").tobytes()


def _decode_py(data: bytes, t: EntropyTables, plane: int, out: np.ndarray,
               indexes: np.ndarray | None = None) -> None:
    if len(data) % 4:
        raise ValueError("entropy-coded string is not a whole number of 32-bit words")
    if len(data) < 8:
        raise ValueError("entropy-coded string is shorter than the coder's state")
    words = np.frombuffer(data, dtype="<u4").tolist()
    x, pos = words[0] | (words[1] << 32), 2
    if x < _L:
        raise ValueError("entropy-coded string starts with an invalid coder state")

    def renormalize(where: str) -> None:
        nonlocal x, pos
        if x < _L:
            if pos >= len(words):
                raise ValueError(f"entropy-coded string ends {where}")
            x = (x << 32) | words[pos]
            pos += 1

    def nibble() -> int:
        nonlocal x
        val = x & _BYPASS_MAX
        x >>= _BYPASS_BITS
        renormalize("inside a bypass run")
        return val

    cdfs = [t.cdfs[k, : t.lengths[k]].tolist() for k in range(t.channels)]
    for i in range(len(out)):
        k = int(indexes[i]) if indexes is not None else i // plane
        cdf = cdfs[k]
        cum = x & _MASK
        s = int(np.searchsorted(cdf, cum, side="right")) - 1
        x = (cdf[s + 1] - cdf[s]) * (x >> PRECISION) + (x & _MASK) - cdf[s]
        renormalize("before its latent")
        value = s
        if value == len(cdf) - 2:
            val = nibble()
            nibbles = val
            while val == _BYPASS_MAX:
                val = nibble()
                nibbles += val
                if nibbles > _MAX_NIBBLES:
                    break
            if nibbles > _MAX_NIBBLES:
                raise ValueError("bypass run longer than a 32-bit value")
            raw = 0
            for j in range(nibbles):
                raw |= nibble() << (j * _BYPASS_BITS)
            value = -(raw >> 1) - 1 if raw & 1 else (raw >> 1) + len(cdf) - 2
        value += int(t.offsets[k])
        if not -(2**31) <= value < 2**31:
            raise ValueError("decoded symbol out of range")
        out[i] = value
    if pos != len(words):
        raise ValueError("entropy-coded string is longer than its latent")
    if x != _L:
        raise ValueError("entropy-coded string does not end in the coder's initial state")
