r"""SlimCAE-VR: SlimCAE with λ-modulation, a continuous rate inside every width.

Combines the slimmable autoencoder (:mod:`slimcodec.models.slimcae`) with the modulated
autoencoder of Yang, Herranz, van de Weijer, Mozerov, "Variable Rate Deep Image Compression
with Modulated Autoencoder" (IEEE SPL 2020). As in the MAE code, every GDN of the encoder
sees its input scaled by :math:`m^a_k(\lambda)` and every inverse GDN of the decoder has
its output scaled by :math:`m^s_k(\lambda)` (:class:`~slimcodec.layers.LambdaModulation`):

.. code-block:: none

    g_a: conv -> (x m1(λ)) -> GDN -> conv -> (x m2(λ)) -> GDN -> conv -> (x m3(λ)) -> GDN
    g_s: IGDN -> (x d1(λ)) -> deconv -> IGDN -> (x d2(λ)) -> deconv -> IGDN -> (x d3(λ)) -> deconv

The layers are SlimCAE's own (same names), so a trained SlimCAE initialises one of these.

**Latent gain** (``latent_gain=True``, as shipped). The MAE modulations sit before GDNs,
which normalise much of a scale away, and learn slowly: a first run of 6,500 GPU steps from
``slimcae`` spanned only 2x in rate over a 100x λ range. A per-channel gain
:math:`G(\lambda)` (:class:`~slimcodec.layers.LatentGain`) multiplies the latent before
rounding and divides it after, a λ-dependent quantisation step, so the rate follows λ
from the start:

.. math::

    \hat y = \lfloor g_a(x;\lambda)\, G(\lambda) - \mu \rceil + \mu, \qquad
    \hat x = g_s(\hat y / G(\lambda); \lambda).

**Entropy models.** A factorized prior is one fixed density per channel, but the latent's
distribution moves with λ: at a low λ most channels collapse onto their median, at a high
λ they spread over many bins. One density shared by all λ is a mixture that charges the
low rates for the spread of the high ones. Each width therefore has ``rate_anchors``
entropy models at log-spaced anchors :math:`a_0 < \dots < a_{K-1}` over the model's
λ bounds, and a λ is coded with the model of its nearest anchor in :math:`\log\lambda`
(an integer function of the container's f32 λ, so the decoder needs nothing else).
The `vr_penalty` section of ``benchmarks/variable_rate.py`` measures this choice against
one shared model (``rate_anchors=1``), and the argument does not survive longer training:
each anchor's density sees only the λ draws near it and lags behind the shared one. A short
run of that benchmark chose the 8 anchors `slimcae-vr` ships; a longer one favours a single
model, which ``slimcodec train`` now uses by default.

Every width has its own trained λ range (``lambda_ranges``), where its RD points are
useful; the λ-scheduler may narrow or move it. :meth:`set_lambda` sets λ as
:meth:`set_width` sets the width: explicit per-model state, rounded to float32 so that the
encoder runs with exactly the λ the container stores.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from compressai.entropy_models import EntropyBottleneck
from torch import Tensor, nn

from slimcodec.bitstream.rate import anchor_index
from slimcodec.layers import LambdaModulation, LatentGain, Slimmable, SyncFreeEntropyBottleneck

from .slimcae import DEFAULT_WIDTHS, SlimCAE

__all__ = ["DEFAULT_LAMBDA_RANGES", "ModulatedSlimCAE"]

#: Per-width λ ranges (CompressAI's convention, widest first): narrow widths are trained
#: for the low rates where they are RD-efficient, the widest up to about 1-2 bpp.
DEFAULT_LAMBDA_RANGES = ((0.002, 0.2), (0.0015, 0.1), (0.001, 0.05), (0.0007, 0.025),
                         (0.0005, 0.012))


def as_float32(value: float) -> float:
    """``value`` rounded to the nearest float32, as the container stores λ."""
    return float(np.float32(value))


def _envelope(ranges: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The smallest λ bounds that hold every width's range."""
    return min(lo for lo, _ in ranges), max(hi for _, hi in ranges)


def _contain(lo: float, hi: float, ranges: Sequence[tuple[float, float]]) -> bool:
    """Whether the λ bounds ``lo``, ``hi`` hold every width's range."""
    low, high = _envelope(ranges)
    return 0 < lo <= low and high <= hi < math.inf


class ModulatedSlimCAE(SlimCAE):
    """SlimCAE whose rate follows a continuous λ inside every width.

    Args:
        widths, gdn: as :class:`~slimcodec.models.SlimCAE`.
        lambda_ranges: one ``(low, high)`` λ range per width, widest first.
        rate_anchors: entropy models per width, at log-spaced λ over the model's bounds.
        lambda_bounds: the λ any width may ever use (default: from the smallest low to the
            largest high of ``lambda_ranges``); they fix the modulations' input scale and the
            anchors, so λ-scheduling can move a range only within them.
        hidden: hidden units of each modulation network (MAE uses 50).
        latent_gain: scale the latent by a learned λ-dependent gain (see above).
    """

    # The latent gain stays out of both: the encoder multiplies by it, the decoder divides.
    ENCODER_PARAMETERS = ("g_a.", "modulation_a.")
    DECODER_PARAMETERS = ("g_s.", "modulation_s.")

    def __init__(
        self,
        widths: Sequence[int] = DEFAULT_WIDTHS,
        gdn: str = "slim+",
        lambda_ranges: Sequence[Sequence[float]] = DEFAULT_LAMBDA_RANGES,
        rate_anchors: int = 8,
        hidden: int = 50,
        latent_gain: bool = False,
        lambda_bounds: Sequence[float] | None = None,
    ) -> None:
        super().__init__(widths, gdn)
        ranges = [(float(lo), float(hi)) for lo, hi in lambda_ranges]
        if len(ranges) != len(self.widths):
            raise ValueError(f"need one λ range per width {self.widths}, got {len(ranges)}")
        if any(not 0 < lo <= hi < math.inf for lo, hi in ranges):
            raise ValueError(f"λ ranges must be 0 < low <= high, got {ranges}")
        if rate_anchors < 1:
            raise ValueError("rate_anchors must be at least 1")
        self.lambda_ranges = ranges
        self.rate_anchors = int(rate_anchors)
        self.hidden = int(hidden)
        # The bounds fix the modulation's input normalisation and the anchors for good:
        # moving a width's range later (λ-scheduling) must not change either.
        lo, hi = (float(b) for b in (lambda_bounds or _envelope(ranges)))
        if not _contain(lo, hi, ranges):
            raise ValueError(f"λ bounds {lambda_bounds} must contain every width's range")
        self.lambda_bounds = (lo, hi)
        w, k = self.widths, self.rate_anchors
        self.entropy_bottlenecks = nn.ModuleList(
            SyncFreeEntropyBottleneck(c) for c in w for _ in range(k))
        self.modulation_a = nn.ModuleList(LambdaModulation(w, hidden) for _ in range(3))
        self.modulation_s = nn.ModuleList(LambdaModulation(w, hidden) for _ in range(3))
        self.latent_gain = LatentGain(w) if latent_gain else None
        self._slimmable: tuple[Slimmable, ...] = tuple(
            m for m in self.modules() if isinstance(m, Slimmable))
        self._lambda = as_float32(math.sqrt(ranges[0][0] * ranges[0][1]))

    @property
    def config(self) -> dict[str, Any]:
        return {**super().config, "lambda_ranges": [list(r) for r in self.lambda_ranges],
                "rate_anchors": self.rate_anchors, "hidden": self.hidden,
                "latent_gain": self.latent_gain is not None,
                "lambda_bounds": list(self.lambda_bounds)}

    # -- λ ----------------------------------------------------------------------------------

    @property
    def lmbda(self) -> float:
        """The active λ (a float32 value)."""
        return self._lambda

    def lambda_range(self, width: int | None = None) -> tuple[float, float]:
        """The trained λ range of ``width`` (default: the active width)."""
        index = self._width_index if width is None else self.widths.index(int(width))
        return self.lambda_ranges[index]

    def set_lambda(self, lmbda: float) -> None:
        """Run at rate-distortion weight ``lmbda`` (within the model's λ bounds)."""
        value = as_float32(lmbda)
        lo, hi = self.lambda_bounds
        # float32 rounding of the bounds themselves must stay inside.
        if not as_float32(lo) <= value <= as_float32(hi):
            raise ValueError(f"λ {lmbda:g} is outside this model's bounds [{lo:g}, {hi:g}]")
        self._lambda = value

    @contextmanager
    def using_lambda(self, lmbda: float) -> Iterator[ModulatedSlimCAE]:
        previous = self._lambda
        self.set_lambda(lmbda)
        try:
            yield self
        finally:
            self._lambda = previous

    def anchor_index(self, lmbda: float) -> int:
        """Which of the width's entropy models codes at ``lmbda`` (nearest in log λ; the
        rule is part of the format: :func:`slimcodec.bitstream.rate.anchor_index`)."""
        return anchor_index(lmbda, self.lambda_bounds, self.rate_anchors)

    def anchors(self) -> list[float]:
        """The λ of each anchor, lowest first."""
        lo, hi = self.lambda_bounds
        k = self.rate_anchors
        return [lo * (hi / lo) ** (j / (k - 1)) if k > 1 else math.sqrt(lo * hi)
                for j in range(k)]

    def _source_bottleneck(self) -> EntropyBottleneck:
        return self.entropy_bottlenecks[
            self._width_index * self.rate_anchors + self.anchor_index(self._lambda)]

    # -- modulated transforms ---------------------------------------------------------------

    def move_lambda_bounds(self, bounds: Sequence[float]) -> None:
        r"""Give the model other λ bounds without changing what it computes at any λ.

        Training a λ range beyond the bounds (a higher top for the widest width) needs wider
        ones, and the bounds fix the modulations' input :math:`t`. Each modulation's first
        layer is linear in :math:`t`, so it is rewritten for the new normalisation:
        :math:`t_{old} = a\,t_{new} + b` with :math:`a = \ln(h'/l') / \ln(h/l)` and
        :math:`b = \ln(l'/l) / \ln(h/l)`, hence :math:`W t_{old} + c = (aW)\,t_{new} + (bW +
        c)`. The latent gain sees :math:`\ln\lambda - \ln\lambda_{mid}` and has no offset
        that could absorb a moved middle, so new bounds must keep the geometric middle
        :math:`\sqrt{lh}`; the anchors of a model with several entropy models per width sit
        at fixed places between the bounds, so the model must have one.
        """
        lo, hi = (float(b) for b in bounds)
        old_lo, old_hi = self.lambda_bounds
        if self.rate_anchors != 1:
            raise ValueError("λ bounds fix where the rate anchors sit: only a model with one "
                             "entropy model per width can move them")
        if not _contain(lo, hi, self.lambda_ranges):
            raise ValueError(f"λ bounds {[lo, hi]} must contain every width's range")
        middle = math.sqrt(old_lo * old_hi)
        if self.latent_gain is not None and not math.isclose(lo * hi, old_lo * old_hi,
                                                               rel_tol=1e-9):
            raise ValueError(f"λ bounds {[lo, hi]} must keep the middle {middle:g} of "
                             f"{[old_lo, old_hi]} (the latent gain's centre): e.g. "
                             f"[{middle ** 2 / hi:g}, {hi:g}]")
        span = math.log(old_hi / old_lo)
        a, b = math.log(hi / lo) / span, math.log(lo / old_lo) / span
        with torch.no_grad():
            for modulation in (*self.modulation_a, *self.modulation_s):
                first = modulation.hidden  # Linear(1, hidden): W (hidden, 1), c (hidden,)
                first.bias.add_(b * first.weight[:, 0])
                first.weight.mul_(a)
        self.lambda_bounds = (lo, hi)

    def lambdas_for(self, x: Tensor, lmbda: Tensor | None) -> Tensor | None:
        """Training with one λ per image (``lmbda`` of shape ``(N,)``), checked: only a model
        with one entropy model per width can code a batch of λs (an anchored one picks its
        density by λ). None: the active λ."""
        if lmbda is None:
            return None
        if self.rate_anchors > 1:
            raise ValueError("one λ per image needs a single entropy model per width "
                             f"(this model has {self.rate_anchors} anchors)")
        if lmbda.shape not in ((1,), (x.shape[0],)):
            raise ValueError(f"λ of shape {tuple(lmbda.shape)} for a batch of {x.shape[0]}")
        return lmbda.to(x.dtype)

    def forward(self, x: Tensor, lmbda: Tensor | None = None) -> dict[str, Any]:
        """As :meth:`SlimCAE.forward`; ``lmbda`` ``(N,)``: each image at its own λ
        (training), otherwise the active λ."""
        lmbda = self.lambdas_for(x, lmbda)
        return self._coded(self.analysis(x, lmbda), lambda y_hat: self.synthesis(y_hat, lmbda))

    def lambda_tensor(self, like: Tensor) -> Tensor:
        """The active λ as a one-element tensor (what an exported graph takes as input)."""
        return torch.full((1,), self._lambda, dtype=like.dtype, device=like.device)

    def conditions(self, lmbda: Tensor) -> tuple[Tensor, Tensor]:
        """From a λ tensor: the modulations' input :math:`t` (λ's position between the
        bounds in log scale) and the latent gain's :math:`\\ln\\lambda - \\ln\\lambda_{mid}`.

        One computation in tensor ops, so that the eager model and an exported graph (which
        takes λ as an input) compute the same values.
        """
        lo, hi = self.lambda_bounds
        log_lambda = torch.log(lmbda)
        t = (log_lambda - math.log(lo)) / math.log(hi / lo)
        return t, log_lambda - 0.5 * (math.log(lo) + math.log(hi))

    def gain(self, log_ratio: Tensor) -> Tensor | None:
        """The latent gain :math:`G(\\lambda)` at the active width (None without one)."""
        return None if self.latent_gain is None else self.latent_gain(log_ratio)

    def analysis(self, x: Tensor, lmbda: Tensor | None = None) -> Tensor:
        """:math:`y = g_a(x; \\lambda)\\,G(\\lambda)` at the active width and λ (or ``lmbda``)."""
        t, log_ratio = self.conditions(self.lambda_tensor(x) if lmbda is None else lmbda)
        conv1, gdn1, conv2, gdn2, conv3, gdn3 = self.g_a
        m1, m2, m3 = self.modulation_a
        x = self._stage("encoder", 0, gdn1(conv1(x) * m1(t)))
        x = self._stage("encoder", 1, gdn2(conv2(x) * m2(t)))
        y = self._stage("encoder", 2, gdn3(conv3(x) * m3(t)))
        gain = self.gain(log_ratio)
        return y if gain is None else y * gain

    def synthesis(self, y_hat: Tensor, lmbda: Tensor | None = None) -> Tensor:
        """:math:`g_s(\\hat y / G(\\lambda); \\lambda)` at the active width and λ."""
        t, log_ratio = self.conditions(self.lambda_tensor(y_hat) if lmbda is None else lmbda)
        gain = self.gain(log_ratio)
        if gain is not None:
            y_hat = y_hat / gain
        igdn1, deconv1, igdn2, deconv2, igdn3, deconv3 = self.g_s
        d1, d2, d3 = self.modulation_s
        x = self._stage("decoder", 0, deconv1(igdn1(y_hat) * d1(t)))
        x = self._stage("decoder", 1, deconv2(igdn2(x) * d2(t)))
        return self._stage("decoder", 2, deconv3(igdn3(x) * d3(t)))

    def _stage(self, side: str, stage: int, x: Tensor) -> Tensor:
        """The active domain adapter's work after a stage (none without an adapter)."""
        if self._adapter is None:
            return x
        hook = self._adapter.encoder_stage if side == "encoder" else self._adapter.decoder_stage
        return hook(stage, x)
