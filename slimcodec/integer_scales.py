r"""The hyperprior's scale path in integer arithmetic: one numpy function for every runtime.

A mean-scale hyperprior codes each latent element :math:`\hat y_i` with a Gaussian whose
scale :math:`\sigma_i` the hyper-synthesis predicts from :math:`\hat z`; the entropy coder
uses the CDF of the table scale nearest :math:`\sigma_i`. If the decoder's arithmetic
differs from the encoder's by one ulp where a scale sits on a table boundary, it picks
another CDF and the rANS decoder desynchronises: the rest of the image is garbage
(CompressAI issues #279 and #309). Float networks give no such guarantee across CPUs,
thread counts or libraries.

So the scale branch runs as an *integer network* (Ballé, Johnston, Minnen, "Integer
networks for data compression with latent-variable models", ICLR 2019): integer weights,
integer activations, and the table index as its output,

.. math::

    a^{(l+1)} = \mathrm{clip}\big(\lfloor (W^{(l)} * a^{(l)} + b^{(l)})\, m^{(l)} + \tfrac12
    \rfloor,\ 0,\ A\big), \qquad
    k = \mathrm{clip}\big(\lfloor (W^{(L)} * a^{(L)} + b^{(L)})\, m^{(L)} + o \rfloor,
    0,\ K - 1\big),

with :math:`a^{(0)} = \hat z - \mu_z` (the decoded symbols, clipped to :math:`\pm 255`),
8-bit weights :math:`|W| \le 127` and activations :math:`0 \le a \le A = 255`. Each
convolution is one float32 matrix product per kernel tap, of integer-valued arrays: with at
most 518 input channels every product and partial sum is an integer below
:math:`518 \cdot 127 \cdot 255 < 2^{24}`, so each is exact in float32 whatever the
summation order, blocking or thread count of the BLAS underneath; the taps are summed in
float64, exactly. (16-bit operands in float64, exact too, ran 2.4x slower: the scale
network is on the decoder's path.)
The per-channel requantisation is one IEEE multiply and one add per element, correctly
rounded on every conforming CPU. The result is a deterministic function of the symbols.

The float network it comes from (:class:`slimcodec.models.hyperprior.ScaleSynthesis`) is
trained in float; :meth:`~slimcodec.models.hyperprior.ScaleSynthesis.integer_net` derives
the integers after training (per-output-channel weight scales, per-width activation scales
from ranges tracked during training). ``benchmarks/hyperprior.py`` measures what that costs
against float scales.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ACTIVATION_MAX", "INPUT_BOUND", "WEIGHT_MAX", "IntegerLayer", "IntegerScaleNet"]

WEIGHT_MAX = (1 << 7) - 1
ACTIVATION_MAX = (1 << 8) - 1
#: Symbols of :math:`\hat z` beyond this are clipped before the first layer (a trained
#: model's are within a few dozen; a hostile file's may be anything).
INPUT_BOUND = (1 << 8) - 1
# Largest |partial sum| of one kernel tap's product, computed in float32: every integer
# below 2^24 is exact there. The taps are summed in float64 (exact below 2^53).
_EXACT_TAP = float(1 << 24)
_EXACT = float(1 << 53)


@dataclass(frozen=True)
class IntegerLayer:
    """One layer: ``weight`` ``(out, in, k, k)`` and ``bias`` ``(out,)`` integer-valued
    float64, ``multiplier`` ``(out,)`` float64; a transposed convolution when ``stride`` > 1
    (upsampling exactly by ``stride``, as the float layer), else a "same" convolution."""

    weight: np.ndarray
    bias: np.ndarray
    multiplier: np.ndarray
    stride: int = 1

    def __post_init__(self) -> None:
        for name in ("weight", "bias", "multiplier"):
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name),
                                                                dtype=np.float64))
        w, b, m = self.weight, self.bias, self.multiplier
        if w.ndim != 4 or w.shape[2] != w.shape[3] or w.shape[2] % 2 == 0:
            raise ValueError(f"weight must be (out, in, k, k) with k odd, got {w.shape}")
        if b.shape != (w.shape[0],) or m.shape != (w.shape[0],):
            raise ValueError("bias and multiplier must be (out,)")
        if not (np.all(np.abs(w) <= WEIGHT_MAX) and np.array_equal(w, np.rint(w))):
            raise ValueError(f"weights must be integers in ±{WEIGHT_MAX}")
        if not np.array_equal(b, np.rint(b)) or not np.all(np.isfinite(m)):
            raise ValueError("biases must be integers and multipliers finite")
        tap = w.shape[1] * WEIGHT_MAX * max(ACTIVATION_MAX, INPUT_BOUND)
        if tap >= _EXACT_TAP or w.shape[2] ** 2 * tap + np.abs(b).max(initial=0) >= _EXACT:
            raise ValueError("layer too large for exact accumulation")
        if self.stride not in (1, 2):
            raise ValueError("stride must be 1 or 2")
        # One contiguous (out, in) matrix per kernel tap: a strided slice of the kernel
        # would send numpy's matmul to its slow non-BLAS loop.
        object.__setattr__(self, "_taps", np.ascontiguousarray(w.transpose(2, 3, 0, 1),
                                                              dtype=np.float32))

    def accumulate(self, x: np.ndarray) -> np.ndarray:
        """The exact integer pre-activation ``W * x + b`` of ``(in, H, W)`` ``x``."""
        taps = self._taps
        cout, cin, k, _ = self.weight.shape
        if x.shape[0] != cin:
            raise ValueError(f"input has {x.shape[0]} channels, the layer {cin}")
        _, h, wd = x.shape
        p = k // 2
        x = x.astype(np.float32)  # integers below 2^8: exact
        flat = x.reshape(cin, -1)
        if self.stride == 1:
            padded = np.zeros((cin, h + 2 * p, wd + 2 * p), np.float32)
            padded[:, p : p + h, p : p + wd] = x
            out = np.zeros((cout, h * wd))
            for ky in range(k):
                for kx in range(k):
                    tap = np.ascontiguousarray(padded[:, ky : ky + h, kx : kx + wd])
                    out += taps[ky, kx] @ tap.reshape(cin, -1)
            out = out.reshape(cout, h, wd)
        else:  # transposed: input (i, j) adds w[..., ky, kx] at output (s*i + ky - p, ...)
            s = self.stride
            full = np.zeros((cout, s * (h - 1) + k, s * (wd - 1) + k))
            for ky in range(k):
                for kx in range(k):
                    contribution = (taps[ky, kx] @ flat).reshape(cout, h, wd)
                    full[:, ky : ky + s * h : s, kx : kx + s * wd : s] += contribution
            out = full[:, p : p + s * h, p : p + s * wd]
        out += self.bias[:, None, None]  # in place: a band's float64 activations are large
        return out


@dataclass(frozen=True)
class IntegerScaleNet:
    """The integer scale branch of one width: symbols of :math:`\\hat z` -> table indexes.

    ``offset``: added after the last layer's multiplier (it maps log-scales onto the table's
    log-spaced levels); ``levels``: the scale table's length.
    """

    layers: tuple[IntegerLayer, ...]
    offset: float
    levels: int

    def __post_init__(self) -> None:
        if not self.layers or self.levels < 1 or not np.isfinite(self.offset):
            raise ValueError("an integer scale net needs layers, levels and a finite offset")
        for a, b in zip(self.layers, self.layers[1:], strict=False):
            if a.weight.shape[0] != b.weight.shape[1]:
                raise ValueError("consecutive layers' channels do not match")

    @property
    def channels(self) -> int:
        """Channels of :math:`\\hat z` it takes (and of :math:`\\hat y` it indexes)."""
        return self.layers[0].weight.shape[1]

    def indexes(self, symbols: np.ndarray) -> np.ndarray:
        """``(C, h, w)`` integer symbols of :math:`\\hat z` (any integer or float dtype
        holding integers) -> ``(C', 4h, 4w)`` int32 scale-table indexes."""
        x = np.asarray(symbols)
        if x.ndim != 3:
            raise ValueError(f"symbols must be (C, h, w), got shape {x.shape}")
        x = np.clip(np.rint(x.astype(np.float64)), -INPUT_BOUND, INPUT_BOUND)
        *hidden, last = self.layers
        # Each step in place, the same operations in the same order as out of place: the
        # activations are float64 and as large as the band of the latent they index.
        for layer in hidden:
            x = layer.accumulate(x)
            x *= layer.multiplier[:, None, None]
            x += 0.5
            np.clip(np.floor(x, out=x), 0, ACTIVATION_MAX, out=x)
        k = last.accumulate(x)
        k *= last.multiplier[:, None, None]
        k += self.offset
        return np.clip(np.floor(k, out=k), 0, self.levels - 1, out=k).astype(np.int32)

    def macs(self, size: tuple[int, int]) -> int:
        """Multiply-adds of :meth:`indexes` on symbols of ``size`` (h, w)."""
        h, w = size
        total = 0
        for layer in self.layers:  # every input position meets every weight once
            total += layer.weight.size * h * w
            h, w = h * layer.stride, w * layer.stride
        return int(total)

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Its arrays by name, for a bundle's ``.npz`` (read back by :meth:`from_arrays`)."""
        out = {f"{prefix}offset": np.float64(self.offset), f"{prefix}levels": np.int64(self.levels)}
        for i, layer in enumerate(self.layers):
            out[f"{prefix}{i}.weight"] = layer.weight.astype(np.int8)  # ±127: exact, 1/8 the bytes
            out[f"{prefix}{i}.bias"] = layer.bias
            out[f"{prefix}{i}.multiplier"] = layer.multiplier
            out[f"{prefix}{i}.stride"] = np.int64(layer.stride)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "") -> IntegerScaleNet:
        """Inverse of :meth:`arrays`; ``ValueError`` for missing or inconsistent arrays."""
        try:
            layers = []
            while f"{prefix}{len(layers)}.weight" in arrays:
                i = len(layers)
                layers.append(IntegerLayer(arrays[f"{prefix}{i}.weight"],
                                           arrays[f"{prefix}{i}.bias"],
                                           arrays[f"{prefix}{i}.multiplier"],
                                           int(arrays[f"{prefix}{i}.stride"])))
            return cls(tuple(layers), float(arrays[f"{prefix}offset"]),
                       int(arrays[f"{prefix}levels"]))
        except KeyError as exc:
            raise ValueError(f"integer scale net: missing array {exc}") from None
