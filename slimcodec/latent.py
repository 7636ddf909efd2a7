r"""How a latent becomes entropy-coded strings and back: the one interface model kinds differ by.

Every model kind runs the same image transforms around its latent (tiled analysis, tiled
synthesis: :mod:`slimcodec.tiling`); what differs is how :math:`y` is quantised and coded.
That difference lives here, behind two calls that :class:`slimcodec.codec.Codec` and the
edge runtime (``export/edge``) make alike, whatever the kind:

* ``coder.encode(y)``: the unrounded ``(C, h, w)`` latent -> the container's strings;
* ``coder.decode(strings, (h, w))``: strings -> the ``(C, h, w)`` float32 :math:`\hat y`
  the synthesis transform takes (a :class:`~slimcodec.errors.CorruptBitstreamError` for
  strings that are not a coding of one).

A model builds its coder for the active width, λ and adapter (``model.latent_coder()``);
the exporter stores ``coder.arrays()`` and the graphs of ``model.coder_networks()`` in a
bundle, and the bundle rebuilds the same coder with :func:`coder_from_arrays`. This module
needs numpy alone: the networks a coder runs (the hyperprior's) are callables numpy ->
numpy, a torch module's in one runtime, an onnxruntime session's in the other.

Kinds:

* :class:`FactorizedCoder` -- one density per channel (SlimCAE, SlimCAE-VR): one string,
  :math:`\hat y = \lfloor y - m \rceil + m` with the channel medians :math:`m`.
* :class:`HyperpriorCoder` -- mean-scale hyperprior (SlimCAE-HP): two strings, first
  :math:`\hat z` (factorized), then :math:`\hat y` coded element by element with the
  Gaussian of the scale-table index the integer network (:mod:`slimcodec.integer_scales`)
  computes from :math:`\hat z`'s symbols, centred on the means :math:`h_\mu` predicts.
* :class:`CheckerboardCoder` -- the same strings and indexes (SlimCAE-HPC), with the
  non-anchor elements' means corrected from the decoded anchors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields

import numpy as np

from slimcodec.bitstream import rans
from slimcodec.errors import CorruptBitstreamError
from slimcodec.integer_scales import IntegerScaleNet
from slimcodec.utils.memory import release_freed_memory

__all__ = ["NETWORKS", "CheckerboardCoder", "FactorizedCoder", "HyperpriorCoder", "LatentCoder",
           "anchors", "coder_from_arrays"]

#: ``(C, h, w)`` float32 -> ``(C', h', w')`` float32: a hyper network as a coder calls it.
Network = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class FactorizedCoder:
    """One factorized density per channel: ``medians`` ``(C,)``, one CDF per channel."""

    medians: np.ndarray
    tables: rans.EntropyTables
    strings: int = 1

    @property
    def channels(self) -> int:
        return self.tables.channels

    def quantize(self, y: np.ndarray) -> np.ndarray:
        """:math:`\\lfloor y - m \\rceil` as int32 symbols, channel by channel (no
        temporary as large as the latent)."""
        m = self._m(y)
        symbols = np.empty(y.shape, np.int32)
        for c in range(len(y)):
            symbols[c] = np.rint(y[c] - m[c])
        return symbols

    def dequantize_in_place(self, symbols: np.ndarray) -> np.ndarray:
        """:math:`\\hat y` = symbols + :math:`m` as float32, written over ``symbols``
        channel by channel (a float32 view of their memory: the latent is the largest thing a
        decoder holds, so it holds it once)."""
        m = self._m(symbols)
        y_hat = symbols.view(np.float32)
        for c in range(len(symbols)):
            y_hat[c] = symbols[c] + m[c]
        return y_hat

    def _m(self, like: np.ndarray) -> np.ndarray:
        return self.medians.astype(np.float32).reshape(-1, *([1] * (like.ndim - 1)))

    def encode_symbols(self, symbols: np.ndarray) -> tuple[bytes, ...]:
        return (rans.encode(symbols, self.tables),)

    def encode(self, y: np.ndarray) -> tuple[bytes, ...]:
        return self.encode_symbols(self.quantize(y))

    def decode_symbols(self, strings: tuple[bytes, ...], size: tuple[int, int]) -> np.ndarray:
        _check_count(strings, self.strings)
        return rans.decode(strings[0], self.tables, (self.channels, *size))

    def decode(self, strings: tuple[bytes, ...], size: tuple[int, int]) -> np.ndarray:
        return self.dequantize_in_place(self.decode_symbols(strings, size))

    def arrays(self) -> dict[str, np.ndarray]:
        """What a bundle stores (:func:`coder_from_arrays` reads it back)."""
        return {"cdfs": self.tables.cdfs, "lengths": self.tables.lengths,
                "offsets": self.tables.offsets, "medians": np.asarray(self.medians, np.float32)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "") -> FactorizedCoder:
        tables = rans.EntropyTables(*(arrays[f"{prefix}{k}"] for k in
                                      ("cdfs", "lengths", "offsets")))
        medians = np.asarray(arrays[f"{prefix}medians"], np.float32).reshape(-1)
        if medians.shape != (tables.channels,):
            raise ValueError(f"{len(medians)} medians for {tables.channels} CDFs")
        return cls(medians, tables)


@dataclass(frozen=True)
class HyperpriorCoder:
    """A mean-scale hyperprior: :math:`\\hat z`'s ``z_medians`` and ``z_tables`` (one CDF
    per channel), the integer ``scale_net``, ``y_tables`` (one CDF per table scale), and
    the networks ``hyper_analysis`` (:math:`y \\to z`) and ``hyper_mean`` (symbols of
    :math:`\\hat z` -> :math:`\\mu`)."""

    z_medians: np.ndarray
    z_tables: rans.EntropyTables
    scale_net: IntegerScaleNet
    y_tables: rans.EntropyTables
    hyper_analysis: Network
    hyper_mean: Network
    strings: int = 2
    #: Rows of z the hyper transforms run on at once (each band with
    #: :data:`HYPER_HALO` rows of context on either side), so that their memory is bounded
    #: by the image's width, not its area.
    band: int = 16

    @property
    def channels(self) -> int:
        r"""Channels of the latent (and of :math:`\hat z`)."""
        return self.z_tables.channels

    def z_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """:math:`\\hat z`'s size for a latent of ``size``: a quarter, rounded up (the
        latent is padded to a multiple of 4 for the hyper transforms)."""
        return -(-size[0] // 4), -(-size[1] // 4)

    def _z(self) -> FactorizedCoder:
        return FactorizedCoder(self.z_medians, self.z_tables)

    def encode(self, y: np.ndarray, z_symbols: np.ndarray | None = None) -> tuple[bytes, ...]:
        r"""As :meth:`FactorizedCoder.encode`; ``z_symbols``: code these for :math:`\hat z`
        instead of those of :math:`h_a(y)` (a refined encoder's)."""
        y = np.asarray(y, np.float32)
        size = y.shape[1:]
        zh, zw = self.z_size(size)
        if z_symbols is None:
            z_symbols = self._z().quantize(self._hyper_latent(y, (zh, zw)))
        elif z_symbols.shape != (self.channels, zh, zw):
            raise ValueError(f"z symbols of shape {z_symbols.shape} for a latent of {size}")

        def decoded(rows: slice, near: np.ndarray) -> np.ndarray:  # as the decoder sees them
            return np.rint(y[:, rows] - near).astype(np.float32) + near

        # The means exist a band at a time: besides y, the coder holds the symbols and the
        # uint8 scale indexes whole, the least the one-pass entropy coder needs. The indexes
        # come first, while the symbols do not exist yet: their network's float64 bands are
        # the coder's largest temporaries.
        indexes = self._indexes(z_symbols, size)
        symbols = np.empty(y.shape, np.int32)
        for rows, coded in self._coded_means(z_symbols, size, decoded):
            symbols[:, rows] = np.rint(y[:, rows] - coded)
            release_freed_memory()  # the band's (slimcodec.utils.memory says why)
        return (*self._z().encode_symbols(z_symbols), rans.encode(symbols, self.y_tables, indexes))

    def _hyper_latent(self, y: np.ndarray, z_size: tuple[int, int]) -> np.ndarray:
        r""":math:`h_a(y)`, in bands of rows (each band of ``y`` padded as it is read)."""
        zh, zw = z_size
        padded = (4 * zh, 4 * zw)
        return _by_rows(self.hyper_analysis, lambda a, b: _padded_rows(y, padded, a, b), zh, 4,
                        1, self.band)

    def decode(self, strings: tuple[bytes, ...], size: tuple[int, int]) -> np.ndarray:
        _check_count(strings, self.strings)
        z_symbols = self._z().decode_symbols(strings[:1], self.z_size(size))
        indexes = self._indexes(z_symbols, size)
        symbols = rans.decode(strings[1], self.y_tables, indexes.shape, indexes)
        del indexes
        # Each band of symbols becomes its values in place, its means computed as it comes:
        # the decoder holds one latent-sized array, not symbols, means and values.
        y_hat = symbols.view(np.float32)
        done = 0  # rows of y_hat written

        def decoded(rows: slice, near: np.ndarray) -> np.ndarray:
            # rows above `done` are values already (anchors: symbol + hyper mean, exactly
            # what symbols + near gives there); the rest are still symbols
            split = min(max(done, rows.start), rows.stop)
            rest = self._values(symbols[:, split:rows.stop], near[:, split - rows.start:])
            return np.concatenate([y_hat[:, rows.start:split], rest], axis=1, dtype=np.float32)

        for rows, coded in self._coded_means(z_symbols, size, decoded):
            y_hat[:, rows] = self._values(symbols[:, rows], coded)
            done = rows.stop
            release_freed_memory()
        return y_hat

    def _values(self, symbols: np.ndarray, means: np.ndarray) -> np.ndarray:
        """:math:`\\hat y` of ``symbols`` coded around ``means`` (summed in float64, then
        stored as float32, as this kind always has)."""
        return symbols + means

    def _coded_means(self, z_symbols: np.ndarray, size: tuple[int, int],
                     decoded: Callable[[slice, np.ndarray], np.ndarray]
                     ) -> Iterator[tuple[slice, np.ndarray]]:
        """The means each element of the latent is coded around, in bands of rows from the
        top: ``(rows, their means)``; here the hyper means (``decoded`` is for the
        checkerboard's context, which reads the decoded anchors)."""
        for top, means in self._mean_bands(z_symbols, size):
            yield slice(top, top + means.shape[1]), means

    def _mean_bands(self, z_symbols: np.ndarray, size: tuple[int, int]
                    ) -> Iterator[tuple[int, np.ndarray]]:
        """:math:`h_\\mu(\\hat z)` cropped to the latent's ``size``, in bands of
        ``4 * band`` rows: ``(first row, means)``."""
        return _row_pieces(self.hyper_mean, _rows(z_symbols), z_symbols.shape[1], 1, 4,
                           self.band, size)

    def _indexes(self, z_symbols: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """The latent's scale indexes (integer, exact), uint8 where the table allows."""
        dtype = np.uint8 if self.y_tables.channels <= 256 else np.int32
        indexes = _by_rows(self.scale_net.indexes, _rows(z_symbols, z_symbols.dtype),
                           z_symbols.shape[1], 1, 4, self.band, size, dtype)
        release_freed_memory()  # its float64 bands, before the latent-sized arrays come
        return indexes

    def arrays(self) -> dict[str, np.ndarray]:
        """What a bundle stores (:func:`coder_from_arrays` reads it back)."""
        z = {f"z_{k}": v for k, v in self._z().arrays().items()}
        y = {"y_cdfs": self.y_tables.cdfs, "y_lengths": self.y_tables.lengths,
             "y_offsets": self.y_tables.offsets}
        return {**z, **y, **self.scale_net.arrays("scales_")}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], networks: dict[str, Network]
                    ) -> HyperpriorCoder:
        z = FactorizedCoder.from_arrays(arrays, "z_")
        y_tables = rans.EntropyTables(arrays["y_cdfs"], arrays["y_lengths"], arrays["y_offsets"])
        scale_net = IntegerScaleNet.from_arrays(arrays, "scales_")
        if scale_net.channels != z.channels or scale_net.levels != y_tables.channels:
            raise ValueError("the scale network does not fit the entropy tables")
        return cls(z.medians, z.tables, scale_net, y_tables, networks["hyper_analysis"],
                   networks["hyper_mean"])

    def _conditionals(self, z_symbols: np.ndarray, size: tuple[int, int]
                      ) -> tuple[np.ndarray, np.ndarray]:
        """Scale indexes and hyper means of :math:`\\hat y` as whole arrays (for tools and
        checks that inspect them; coding never holds the means whole)."""
        means = np.concatenate([m for _, m in self._mean_bands(z_symbols, size)], axis=1)
        return self._indexes(z_symbols, size), means


@dataclass(frozen=True)
class CheckerboardCoder(HyperpriorCoder):
    """A mean-scale hyperprior whose non-anchor elements (:math:`i + j` odd) are coded
    around means the network ``mean_context`` corrects from the decoded anchors
    (:class:`~slimcodec.models.CheckerboardSlimCAE`). The strings and the scale indexes
    are :class:`HyperpriorCoder`'s: the context only moves where the latent is rounded."""

    mean_context: Network | None = None

    def _coded_means(self, z_symbols: np.ndarray, size: tuple[int, int],
                     decoded: Callable[[slice, np.ndarray], np.ndarray]
                     ) -> Iterator[tuple[slice, np.ndarray]]:
        r""":meth:`_context_means` on the bands of the hyper means, each with
        :data:`CONTEXT_HALO` rows around it, so that its memory follows the image's width,
        as the hyper transforms' does, not its area. ``decoded(rows, their hyper means)``:
        :math:`\hat y` of those rows (only its anchors are read), called band by band from
        the top."""
        for rows, around, near in _with_halo(self._mean_bands(z_symbols, size), CONTEXT_HALO):
            inner = slice(rows.start - around.start, rows.stop - around.start)
            yield rows, self._context_means(decoded(around, near), near, around.start)[:, inner]

    def _values(self, symbols: np.ndarray, means: np.ndarray) -> np.ndarray:
        """As :meth:`HyperpriorCoder._values`, summed in float32, as this kind always has."""
        return symbols.astype(np.float32) + means

    def _context_means(self, y_hat: np.ndarray, means: np.ndarray, first_row: int = 0
                       ) -> np.ndarray:
        """The means every element of rows ``first_row...`` of the latent is coded around:
        the anchors' own, the others' corrected from the anchors of ``y_hat`` (its other
        values are not read)."""
        if self.mean_context is None:
            raise ValueError("a checkerboard coder needs its mean_context network")
        mask = anchors(means.shape[1:], first_row)
        seen = np.where(mask, y_hat, means).astype(np.float32, copy=False)
        corrected = np.array(self.mean_context(seen), np.float32)  # its own, summed in place
        corrected += means
        return np.where(mask, means, corrected).astype(np.float32, copy=False)

    @classmethod
    def around(cls, plain: HyperpriorCoder, mean_context: Network) -> CheckerboardCoder:
        """``plain``'s coder with the context ``mean_context``."""
        return cls(**{f.name: getattr(plain, f.name) for f in fields(plain)},
                   mean_context=mean_context)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], networks: dict[str, Network]
                    ) -> CheckerboardCoder:
        return cls.around(HyperpriorCoder.from_arrays(arrays, networks),
                          networks["mean_context"])


def anchors(size: tuple[int, int], first_row: int = 0) -> np.ndarray:
    """``(h, w)`` bool: the checkerboard's anchors, the positions with :math:`i + j` even,
    which a :class:`CheckerboardCoder` codes without context; ``first_row``: of the rows
    from that one on (a band's)."""
    h, w = size
    return (np.arange(first_row, first_row + h)[:, None] + np.arange(w)[None]) % 2 == 0


#: Latent rows a band of the context needs on each side: its first convolution is at most
#: 7x7 (:class:`~slimcodec.models.CheckerboardSlimCAE` refuses a larger one), the rest 1x1.
CONTEXT_HALO = 3


#: Rows of context (in rows of z) a band of the hyper transforms needs on each
#: side: ``h_a`` (3x3, then two 5x5/2) and ``h_σ``/``h_μ`` (two 5x5/2 transposed, then 3x3)
#: see at most 2; one more for margin. With it, a band's rows are those of the whole
#: (exactly, for the integer scales).
HYPER_HALO = 3


def _row_bands(rows: int, band: int, halo: int) -> Iterator[tuple[slice, slice, slice]]:
    """Bands of ``band`` of ``rows`` rows: each band's rows, the rows around them that a
    network with ``halo`` rows of reach reads (clipped to the array), and the band's rows
    within those."""
    for start in range(0, rows, band):
        stop = min(start + band, rows)
        lo, hi = max(start - halo, 0), min(stop + halo, rows)
        yield slice(start, stop), slice(lo, hi), slice(start - lo, stop - lo)


def _row_pieces(fn: Network, rows_of: Callable[[int, int], np.ndarray], rows: int,
                rows_in: int, rows_out: int, band: int, size: tuple[int, int] | None = None
                ) -> Iterator[tuple[int, np.ndarray]]:
    r"""``fn`` over an input in bands of ``band`` rows of :math:`\hat z` (``rows`` in all),
    each with :data:`HYPER_HALO` rows of context: ``rows_of(a, b)`` gives the input's rows
    ``[a, b)``, ``rows_in`` of them per row of :math:`\hat z`; the output has ``rows_out``.
    ``(first output row, the band's output rows)`` from the top, cropped to ``size`` (rows,
    columns) when given."""
    if rows <= band:
        out = fn(rows_of(0, rows * rows_in))
        yield 0, out if size is None else out[:, :size[0], :size[1]]
        return
    for part, around, inner in _row_bands(rows, band, HYPER_HALO):
        out = fn(rows_of(around.start * rows_in, around.stop * rows_in))
        out = out[:, inner.start * rows_out : inner.stop * rows_out]
        top = part.start * rows_out
        if size is not None:
            out = out[:, : max(0, size[0] - top), : size[1]]
        if out.shape[1]:
            yield top, out


def _by_rows(fn: Network, rows_of: Callable[[int, int], np.ndarray], rows: int, rows_in: int,
             rows_out: int, band: int, size: tuple[int, int] | None = None,
             dtype: np.dtype | type | None = None) -> np.ndarray:
    """:func:`_row_pieces` gathered into one array (of ``dtype``: the output's own unless
    given), each band written into it as it comes."""
    whole = None
    for top, out in _row_pieces(fn, rows_of, rows, rows_in, rows_out, band, size):
        if whole is None:
            h = rows * rows_out if size is None else size[0]
            whole = np.empty((out.shape[0], h, out.shape[2]), dtype or out.dtype)
        whole[:, top : top + out.shape[1]] = out
    assert whole is not None
    return whole


def _rows(x: np.ndarray, dtype: type = np.float32) -> Callable[[int, int], np.ndarray]:
    """``rows_of`` for :func:`_row_pieces`: rows of ``x``, contiguous, as ``dtype``."""
    return lambda a, b: np.ascontiguousarray(x[:, a:b], dtype)


def _with_halo(bands: Iterator[tuple[int, np.ndarray]], halo: int
               ) -> Iterator[tuple[slice, slice, np.ndarray]]:
    """Consecutive bands of rows, ``(first row, rows)`` from the top, each with up to
    ``halo`` rows of its neighbours on either side: ``(its rows, the rows around them,
    those rows)``; a band and the next one are all it holds (every band but the last has at
    least ``halo`` rows)."""
    before: np.ndarray | None = None
    current = next(bands, None)
    while current is not None:
        after = next(bands, None)
        top, rows = current
        parts = [rows] if before is None else [before[:, -halo:], rows]
        if after is not None:
            parts.append(after[1][:, :halo])
        first = top - (parts[0].shape[1] if before is not None else 0)
        window = np.concatenate(parts, axis=1) if len(parts) > 1 else rows
        yield (slice(top, top + rows.shape[1]), slice(first, first + window.shape[1]), window)
        before, current = rows, after


def _pad(y: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``y`` replicate-padded on the bottom and right to ``size``."""
    return _padded_rows(y, size, 0, size[0])


def _padded_rows(y: np.ndarray, size: tuple[int, int], start: int, stop: int) -> np.ndarray:
    """Rows ``[start, stop)`` of ``y`` replicate-padded on the bottom and right to ``size``,
    as float32: a band of the padded latent, without a padded copy of the whole."""
    h, w = y.shape[1:]
    band = y[:, start:stop] if stop <= h else y[:, np.minimum(np.arange(start, stop), h - 1)]
    if size[1] > w:
        band = np.pad(band, ((0, 0), (0, 0), (0, size[1] - w)), mode="edge")
    return np.ascontiguousarray(band, dtype=np.float32)


def _check_count(strings: tuple[bytes, ...], expected: int) -> None:
    if len(strings) != expected:
        raise CorruptBitstreamError(
            f"corrupt slimcodec file: {len(strings)} strings, this model kind writes "
            f"{expected}")


LatentCoder = FactorizedCoder | HyperpriorCoder | CheckerboardCoder

#: The networks each kind of coder runs, by the names a bundle's graphs have.
NETWORKS: dict[str, tuple[str, ...]] = {
    "factorized": (),
    "hyperprior": ("hyper_analysis", "hyper_mean"),
    "checkerboard": ("hyper_analysis", "hyper_mean", "mean_context"),
}


def coder_from_arrays(kind: str, arrays: dict[str, np.ndarray],
                      networks: dict[str, Network] | None = None) -> LatentCoder:
    """The coder of ``kind`` from its :meth:`arrays` (and the networks :data:`NETWORKS`
    names); ``ValueError`` for an unknown kind or missing or inconsistent arrays."""
    try:
        if kind == "factorized":
            return FactorizedCoder.from_arrays(arrays)
        if kind == "hyperprior":
            return HyperpriorCoder.from_arrays(arrays, networks or {})
        if kind == "checkerboard":
            return CheckerboardCoder.from_arrays(arrays, networks or {})
    except KeyError as exc:
        raise ValueError(f"{kind} coder: missing {exc}") from None
    raise ValueError(f"unknown latent coder kind {kind!r}")
