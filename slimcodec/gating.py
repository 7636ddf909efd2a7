r"""The learned gate's inference in numpy: what both encoders run, torch's and the edge's.

:class:`slimcodec.adaptation.DomainGate` trains the gate (Presta et al., DCC 2024) in torch;
:class:`slimcodec.codec.Codec` and the edge runtime (:class:`slimcodec_edge.edge.EdgeCodec`, which
has no torch) predict with the same arrays and the same arithmetic from here, so that one
latent gives one set of weights in either. The gate's features of a latent :math:`y`
(before rounding): for each of the first ``channels`` channels, :math:`\log(1 +
\mathrm{mean}|y|)` and the share of :math:`|y| > 1/2`; the width, one-hot; where
:math:`\log\lambda` lies in a variable-rate model's λ bounds (0 for a single-rate model).
The network: ``softmax(w2 relu(w1 f + b1) + b2)``, the source's probability first, then each
adapter's; the adapters' are the file's weights, in the container's 64ths. The latent is coded
with the entropy models of the adapter weighed most, where it has its own, else with the
source's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import numpy as np

from slimcodec.bitstream import MIXTURE_UNIT, Bitstream, pack, unpack
from slimcodec.bitstream.mixture import weighed_header

__all__ = ["GATES", "SOURCE", "GateArrays", "adapter_domain", "entropy_domain", "gate_features",
           "gated_file", "keep_gated"]

#: The ``domain=`` values by which an encoder chooses per image how to use its adapters:
#: pick one or none (``auto``), weigh them by search (``mix``) or by the learned gate
#: (``gate``).
GATES = ("auto", "mix", "gate")
#: The ``domain=`` value that codes with the model alone, whatever adapters are loaded: what
#: a codec whose model ships with adapters (and so encodes through ``auto`` by default) is
#: told to skip them with. Neither it nor a gate can name an adapter's domain.
SOURCE = "source"


def adapter_domain(domain: str | None) -> str | None:
    """The adapter a ``domain=`` value names, if it names one: None for the model alone
    (None or :data:`SOURCE`) and for the gates, which choose among the adapters."""
    return None if domain in (None, SOURCE, *GATES) else domain


def gate_features(latent: np.ndarray, channels: int, width_index: int, widths: int,
                  position: float) -> np.ndarray:
    """The ``(2 * channels + widths + 1,)`` float32 features of a ``(C, h, w)`` latent."""
    y = np.abs(np.asarray(latent, np.float32)[:channels])
    onehot = np.zeros(widths, np.float32)
    onehot[width_index] = 1.0
    return np.concatenate([np.log1p(y.mean((1, 2))), (y > 0.5).mean((1, 2)), onehot,
                           [position]]).astype(np.float32)


@dataclass(frozen=True)
class GateArrays:
    """A trained gate's weights and what its features need (see the module docstring)."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    domain_ids: tuple[int, ...]
    channels: int
    widths: tuple[int, ...]
    lambda_bounds: tuple[float, float] | None

    def features(self, latent: np.ndarray, width: int, lmbda: float | None) -> np.ndarray:
        position = 0.0
        if self.lambda_bounds is not None and lmbda is not None:
            lo, hi = (math.log(b) for b in self.lambda_bounds)
            position = (math.log(lmbda) - lo) / (hi - lo)
        return gate_features(latent, self.channels, self.widths.index(width),
                             len(self.widths), position)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        hidden = np.maximum(self.w1 @ features + self.b1, 0)
        logits = (self.w2 @ hidden + self.b2).astype(np.float64)
        p = np.exp(logits - logits.max())
        return p / p.sum()

    def predict(self, latent: np.ndarray, width: int, lmbda: float | None) -> dict[int, float]:
        """Domain id -> its adapter's weight for one ``(C, h, w)`` latent, in 64ths."""
        p = self.probabilities(self.features(latent, width, lmbda))[1:]
        return {d: round(float(w) * MIXTURE_UNIT) / MIXTURE_UNIT
                for d, w in zip(self.domain_ids, p, strict=True)}


def entropy_domain(weights: Mapping[int, float], own_tables: Collection[int]) -> int:
    """The domain whose entropy models code the gate's latent: the adapter the gate weighs
    most, when it has entropy models of its own (its domain's latents are distributed unlike
    photos'); else 0, the source's."""
    weighed = {d: w for d, w in weights.items() if w > 0}
    if not weighed:
        return 0
    best = max(sorted(weighed), key=weighed.__getitem__)
    return best if best in own_tables else 0


def gated_file(coded: bytes, coder: int, weights: Mapping[int, float],
               own_tables: Collection[int]) -> bytes:
    """``coded`` (a file whose latent domain ``coder``'s entropy models coded; 0: the
    source's) with ``weights`` in its header, in its shortest form."""
    plain = unpack(coded)
    return pack(Bitstream(weighed_header(plain.header, weights, coder, own_tables),
                          plain.strings))


def keep_gated(gated: bytes, source: bytes, loss: Callable[[bytes], float]
               ) -> tuple[bytes, bool]:
    """The gate's file where its RD ``loss`` is below the source codec's file's, else the
    source's; and whether the gate's was kept. The gate is a classifier of domains, blind to
    rate and distortion: on an image unlike any it was trained on it can weigh an adapter
    that costs quality, and this one comparison keeps the source's file as the floor."""
    if gated == source or loss(gated) < loss(source):
        return gated, True
    return source, False
