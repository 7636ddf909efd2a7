"""Per-context frequency tables, sent in the file: how the index map and the residual
(:mod:`slimcodec.index_map`, :mod:`slimcodec.residual`) code their symbols.

Each context a block's symbols use has a table in the file, in ascending order of the
context's number: ``m − 1`` (u8), then ``m`` entries of (symbol, frequency), the symbols
strictly ascending (u8 or i8, as the caller says), each frequency (u16) at least 1, their
sum at most 2¹⁶ − 1. A symbol is coded as its entry's position in its context's table,
in one rANS string of :mod:`slimcodec.bitstream.rans` whose CDF for a table is its
frequencies in order, then the coder's escape (never coded) with the rest of 2¹⁶. The
encoder's statistics are exact counts over what it codes, so the tables cost a few
hundred bytes and the string is within a few bytes of its entropy.
"""

from __future__ import annotations

import struct

import numpy as np

from slimcodec.bitstream import rans
from slimcodec.bitstream.rans import PRECISION, EntropyTables

__all__ = ["decode", "encode"]

_COUNT = struct.Struct("<B")
#: The table's frequencies sum to at most this; the coder's escape has the rest of 2¹⁶.
_TOTAL = (1 << PRECISION) - 1


def _entries(signed: bool) -> np.dtype:
    return np.dtype([("symbol", "i1" if signed else "u1"), ("freq", "<u2")])


def _quantized(counts: np.ndarray) -> np.ndarray:
    """Frequencies for ``counts`` (each > 0): each at least 1, summing to ``_TOTAL``."""
    freq = np.maximum(1, counts * _TOTAL // counts.sum()).astype(np.int64)
    freq[np.argmax(freq)] += _TOTAL - freq.sum()
    return freq


def _cdfs(tables: list[np.ndarray]) -> EntropyTables:
    """The rANS tables of the frequencies of each context (symbol ``r``: rank ``r``)."""
    width = max(len(f) for f in tables) + 2
    cdfs = np.zeros((len(tables), width), np.int64)
    lengths = np.empty(len(tables), np.int64)
    for i, freq in enumerate(tables):
        row = np.concatenate([[0], np.cumsum(freq), [1 << PRECISION]])
        cdfs[i, :len(row)], lengths[i] = row, len(row)
    return EntropyTables(cdfs, lengths, np.zeros(len(tables)))


def encode(symbols: np.ndarray, contexts: np.ndarray, signed: bool = False
           ) -> tuple[bytes, bytes]:
    """The tables (each context of ``contexts`` in ascending order) and the rANS string of
    ``symbols`` ``(N,)``, symbol ``i`` coded in context ``contexts[i]``; ``symbols`` must
    fit a u8 (an i8 where ``signed``). ``N`` at least 1."""
    used, dense = np.unique(contexts, return_inverse=True)
    values, code = np.unique(symbols.astype(np.int64), return_inverse=True)
    joint = np.zeros((len(used), len(values)), np.int64)
    np.add.at(joint, (dense, code), 1)
    rank = np.zeros_like(joint)
    head, freqs = bytearray(), []
    entries = _entries(signed)
    for i, row in enumerate(joint):
        present = np.flatnonzero(row)
        rank[i, present] = np.arange(len(present))
        freqs.append(_quantized(row[present]))
        table = np.empty(len(present), entries)
        table["symbol"], table["freq"] = values[present], freqs[-1]
        head += _COUNT.pack(len(present) - 1) + table.tobytes()
    string = rans.encode(rank[dense, code].reshape(1, 1, -1), _cdfs(freqs),
                         dense.reshape(1, 1, -1))
    return bytes(head), string


def decode(data: bytes, offset: int, contexts: np.ndarray, low: int, high: int,
           signed: bool = False) -> tuple[np.ndarray, int]:
    """Read the tables of the contexts ``contexts`` ``(N,)`` use from ``data`` at
    ``offset``, then decode the string (the rest of ``data``): each
    of the ``N`` symbols, int64, and the offset after the tables. Raises ValueError (for
    the caller to name its block) where a table is cut, its symbols are not strictly
    ascending within ``low..high`` or its frequencies not 1 or more summing below 2¹⁶, or
    a decoded position lies outside its table; the rANS decoder's own
    :class:`~slimcodec.errors.CorruptBitstreamError` where the string is not exactly
    the symbols."""
    used, dense = np.unique(contexts, return_inverse=True)
    entries = _entries(signed)
    symbols, freqs = [], []
    for _ in used:
        if len(data) < offset + _COUNT.size:
            raise ValueError("a context's table cut")
        count = _COUNT.unpack_from(data, offset)[0] + 1
        offset += _COUNT.size
        if len(data) < offset + count * entries.itemsize:
            raise ValueError("a context's table cut")
        table = np.frombuffer(data, entries, count, offset)
        offset += count * entries.itemsize
        values, freq = table["symbol"].astype(np.int64), table["freq"].astype(np.int64)
        if (values[0] < low or values[-1] > high or np.any(np.diff(values) <= 0)
                or freq.min() < 1 or freq.sum() > _TOTAL):
            raise ValueError(f"a context's table is not of symbols ascending, {low} to "
                             f"{high}, of frequencies 1 or more summing below "
                             f"{1 << PRECISION}")
        symbols.append(values)
        freqs.append(freq)
    ranks = rans.decode(data[offset:], _cdfs(freqs), (1, 1, len(dense)),
                        dense.reshape(1, 1, -1)).reshape(-1)
    sizes = np.array([len(t) for t in freqs])
    if np.any(ranks >= sizes[dense]):
        raise ValueError("a symbol outside its context's table")
    lookup = np.zeros((len(freqs), sizes.max()), np.int64)
    for i, values in enumerate(symbols):
        lookup[i, :len(values)] = values
    return lookup[dense, ranks], offset
