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
        """:math:`\\lfloor y - m \\rceil` as int32 symbols."""
        return np.rint(y - self._m(y)).astype(np.int32)

    def dequantize(self, symbols: np.ndarray) -> np.ndarray:
        return (symbols + self._m(symbols)).astype(np.float32)

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
        return self.dequantize(self.decode_symbols(strings, size))

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
        size = y.shape[1:]
        zh, zw = self.z_size(size)
        if z_symbols is None:
            z_symbols = self._z().quantize(self._hyper_latent(y, (zh, zw)))
        elif z_symbols.shape != (self.channels, zh, zw):
            raise ValueError(f"z symbols of shape {z_symbols.shape} for a latent of {size}")
        indexes, means = self._conditionals(z_symbols, size)
        y_symbols = self.quantize(np.asarray(y, np.float32), means)
        del means  # the coder's peak memory is a few latents: free each as soon as done
        return (*self._z().encode_symbols(z_symbols),
                rans.encode(y_symbols, self.y_tables, indexes))

    def _hyper_latent(self, y: np.ndarray, z_size: tuple[int, int]) -> np.ndarray:
        r""":math:`h_a(y)`, in bands of rows (the padded copy of ``y`` lives only here)."""
        zh, zw = z_size
        return _by_rows(self.hyper_analysis, _pad(y, (4 * zh, 4 * zw)), zh, 4, 1, self.band)

    def decode(self, strings: tuple[bytes, ...], size: tuple[int, int]) -> np.ndarray:
        _check_count(strings, self.strings)
        z_symbols = self._z().decode_symbols(strings[:1], self.z_size(size))
        indexes, means = self._conditionals(z_symbols, size)
        y_symbols = rans.decode(strings[1], self.y_tables, indexes.shape, indexes)
        del indexes
        return self.dequantize(y_symbols, means)

    def quantize(self, y: np.ndarray, means: np.ndarray) -> np.ndarray:
        """The latent's int32 symbols, :math:`\\lfloor y - \\mu \\rceil`, from the hyper means."""
        return np.rint(y - means).astype(np.int32)

    def dequantize(self, symbols: np.ndarray, means: np.ndarray) -> np.ndarray:
        """:math:`\\hat y` from its symbols and the hyper means (:meth:`quantize`'s inverse)."""
        return (symbols + means).astype(np.float32)

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
        """Scale indexes (integer, exact) and means (float) of :math:`\\hat y`, cropped to
        the latent's ``size``."""
        zh = z_symbols.shape[1]
        indexes = _by_rows(self.scale_net.indexes, z_symbols, zh, 1, 4, self.band, size)
        means = _by_rows(self.hyper_mean, z_symbols.astype(np.float32), zh, 1, 4, self.band,
                         size)
        return indexes, means


@dataclass(frozen=True)
class CheckerboardCoder(HyperpriorCoder):
    """A mean-scale hyperprior whose non-anchor elements (:math:`i + j` odd) are coded
    around means the network ``mean_context`` corrects from the decoded anchors
    (:class:`~slimcodec.models.CheckerboardSlimCAE`). The strings and the scale indexes
    are :class:`HyperpriorCoder`'s: the context only moves where the latent is rounded."""

    mean_context: Network | None = None

    def quantize(self, y: np.ndarray, means: np.ndarray) -> np.ndarray:
        def anchors_hat(rows: slice, near: np.ndarray) -> np.ndarray:  # as decoded
            return np.rint(y[:, rows] - near).astype(np.float32) + near

        symbols = np.empty(y.shape, np.int32)
        for rows, coded in self._banded_means(anchors_hat, means):
            symbols[:, rows] = np.rint(y[:, rows] - coded)
        return symbols

    def dequantize(self, symbols: np.ndarray, means: np.ndarray) -> np.ndarray:
        def decoded(rows: slice, near: np.ndarray) -> np.ndarray:
            return symbols[:, rows].astype(np.float32) + near

        y_hat = np.empty(symbols.shape, np.float32)
        for rows, coded in self._banded_means(decoded, means):
            y_hat[:, rows] = symbols[:, rows].astype(np.float32) + coded
        return y_hat

    def _banded_means(self, decoded: Callable[[slice, np.ndarray], np.ndarray],
                      means: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
        r""":meth:`_context_means` on bands of ``4 * band`` latent rows, each with
        :data:`CONTEXT_HALO` rows around it, so that its memory follows the image's width,
        as the hyper transforms' does, not its area: ``(rows, their means)`` per band.
        ``decoded(rows, their hyper means)``: :math:`\hat y` of those rows (only its
        anchors are read)."""
        for rows, around, inner in _row_bands(means.shape[1], 4 * self.band, CONTEXT_HALO):
            near = means[:, around]
            yield rows, self._context_means(decoded(around, near), near, around.start)[:, inner]

    def _context_means(self, y_hat: np.ndarray, means: np.ndarray, first_row: int = 0
                       ) -> np.ndarray:
        """The means every element of rows ``first_row...`` of the latent is coded around:
        the anchors' own, the others' corrected from the anchors of ``y_hat`` (its other
        values are not read)."""
        if self.mean_context is None:
            raise ValueError("a checkerboard coder needs its mean_context network")
        mask = anchors(means.shape[1:], first_row)
        seen = np.where(mask, y_hat, means).astype(np.float32)
        correction = self.mean_context(seen)
        return np.where(mask, means, means + correction).astype(np.float32)

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


def _by_rows(fn: Network, x: np.ndarray, rows: int, rows_in: int, rows_out: int,
             band: int, size: tuple[int, int] | None = None) -> np.ndarray:
    r"""``fn`` over ``x`` in bands of ``band`` rows of :math:`\hat z` (``rows`` in all):
    ``x`` has ``rows_in`` rows per row of :math:`\hat z`, the output ``rows_out``;
    ``size``: crop the output to these rows and columns (each band is written into it)."""
    if rows <= band:
        out = fn(x)
        return out if size is None else np.ascontiguousarray(out[:, :size[0], :size[1]])
    whole = None
    for part, around, inner in _row_bands(rows, band, HYPER_HALO):
        out = fn(np.ascontiguousarray(x[:, around.start * rows_in : around.stop * rows_in]))
        out = out[:, inner.start * rows_out : inner.stop * rows_out]
        if whole is None:
            h, w = (rows * rows_out, out.shape[2]) if size is None else size
            whole = np.empty((out.shape[0], h, w), out.dtype)
        top = part.start * rows_out
        kept = max(0, min(out.shape[1], whole.shape[1] - top))
        whole[:, top : top + kept] = out[:, :kept, :whole.shape[2]]
    return whole


def _pad(y: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``y`` replicate-padded on the bottom and right to ``size``."""
    h, w = y.shape[1:]
    if (h, w) == tuple(size):
        return np.ascontiguousarray(y, dtype=np.float32)
    return np.pad(y, ((0, 0), (0, size[0] - h), (0, size[1] - w)), mode="edge"
                  ).astype(np.float32)


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
