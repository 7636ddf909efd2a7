r"""Content-adaptive encoding: refine each image's latent by gradient descent, decoder unchanged.

After L²C (Zou et al., "Learning to Learn to Compress") and the latent optimisation of Yang,
Bamler and Mandt ("Improving Inference for Neural Image Compression", NeurIPS 2020): starting
from :math:`y_0 = g_a(x)`, a bounded number of Adam steps lower the rate-distortion loss of
the width (and λ) over the latent alone,

.. math::

    L(y) = \lambda \cdot 255^2 \cdot \mathrm{MSE}\big(x, g_s(\tilde y)\big)
           + \frac{-\log_2 p(\tilde y)}{HW},

where :math:`\tilde y` relaxes the rounding :math:`\lfloor y - \mu \rceil + \mu` (μ: the
entropy model's medians, about which the codec rounds) in one of two ways:

* ``"sga"`` (the default), *stochastic Gumbel annealing* (Yang et al., eq. 5): each element
  becomes a random soft choice between its two neighbouring integers :math:`\lfloor v
  \rfloor` and :math:`\lceil v \rceil`, the nearer more likely,
  :math:`q(\lfloor v \rfloor) \propto \exp(-\operatorname{atanh}(v - \lfloor v \rfloor)/\tau)`,
  sampled with the Gumbel-softmax trick, and the temperature τ anneals from 0.5 towards 0 so
  the relaxation ends at hard rounding. Both terms see the same sample.
* ``"ste"``: straight-through rounding into :math:`g_s` and uniform noise for the rate.

The step size decays linearly to zero. The hard loss of the rounded latent (the MSE of its
synthesis, its rate under the model's density) is measured at the start and over the last
steps, and each tile keeps the best latent seen, the plain encoder's included. The codec
(:meth:`slimcodec.codec.Codec.encode_rgb`) then codes both the plain and the refined latent
and keeps the file whose loss, from its real bytes and its decoded 8-bit pixels, is lower:
a refined file is never worse than the plain one. ``benchmarks/refine.py`` measures both
relaxations: at 100 steps, SGA saved 9-21% BD-rate per width, straight-through 0.5-11%.

Large images are refined tile by tile (:mod:`slimcodec.tiling`'s tiles): each tile's latent
is optimised against the pixels its synthesis window covers, its neighbours' latents held at
their current values, so memory stays bounded. The result is an ordinary file: the decoder,
the container and the entropy coder are untouched.

**Hyperprior models** (:func:`refine_hyperprior`): the rate of :math:`\hat y` depends on
:math:`\hat z`, so both are refined together, as Yang et al. do for their hyperprior models,

.. math::

    L(y, z) = \lambda \cdot 255^2 \cdot \mathrm{MSE}\big(x, g_s(\tilde y)\big)
              + \frac{-\log_2 p(\tilde z) - \log_2 p(\tilde y \mid \tilde z)}{HW},

both relaxed by SGA (:math:`\tilde y` about the means :math:`h_\mu(\tilde z)`), the scales
from the float :math:`h_\sigma` (the file is then coded with the integer one, and the codec's
comparison on real bytes decides). :math:`z` is global to the image, so this runs on the
whole latent at once: its memory grows with the image (about 0.25 GB per megapixel at width
192), where the factorized refinement's does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from compressai.ops import quantize_ste
from torch import Tensor

from slimcodec import tiling
from slimcodec.models import SlimCAE
from slimcodec.utils.tensors import pad_to_multiple

__all__ = [
    "DEFAULT_LR",
    "DEFAULT_REFINE_STEPS",
    "EFFORT_STEPS",
    "HYPERPRIOR_LR",
    "RELAXATIONS",
    "SHORT_RUN_LR",
    "SHORT_RUN_STEPS",
    "RefineResult",
    "refine_hyperprior",
    "refine_latent",
    "refine_strings",
    "sga_round",
    "step_size",
    "steps_for_effort",
]

#: ``--effort`` levels (0-6, as ``cwebp -m``) and the refinement steps each runs.
EFFORT_STEPS = (0, 10, 25, 50, 100, 200, 500)
#: ``--refine`` without a number (effort 4).
DEFAULT_REFINE_STEPS = 100
#: The factorized refinement's step sizes (Adam's, decaying linearly to zero): the larger
#: for runs of up to SHORT_RUN_STEPS steps (``--effort`` 1-3), the smaller for longer ones.
#: On ``slimcae-vr5`` 0.03 gains 1.5-2.7x 0.01's BD-rate at 10 steps and 1.4-1.8x at 25 at
#: every width, a little more on average at 50 (mean over widths -10.6% against -10.2%),
#: and less at 100 (width 192: -11.5% against -15.7%): 2 photos at 160x160,
#: ``benchmarks/refine.py --lr 0.01 0.03``, sections ``refine-slimcae-vr5-lr`` and
#: ``refine-slimcae-vr5-lr100``.
DEFAULT_LR, SHORT_RUN_LR, SHORT_RUN_STEPS = 0.01, 0.03, 50
#: The hyperprior refinement's step size (it moves y and z of the whole image at once). At
#: 0.03 it reaches in 25 steps about what 0.01 reaches in 50, and in 10 what 0.01 does in 25:
#: BD-rate per width against plain encoding, 2 photos at 384x256 (``benchmarks/refine.py
#: --lr 0.01 0.03``, section ``refine-slimcae-hp``); at 100 steps it still matches or beats
#: 0.01 at every width (section ``refine-slimcae-hp-lr100``). At 10 steps (``--effort 1``)
#: 0.06 did a little better at the three widest widths and worse at 72 (mean over widths
#: -7.0% against -6.4%, 3 training photos at 384x256, section
#: ``refine-slimcae-hp-lr10-train``): too little to give effort 1 a step size of its own.
HYPERPRIOR_LR = 0.03
RELAXATIONS = ("sga", "ste")
#: SGA's temperature: τ = max(τ₀·exp(-ANNEAL·t/T_a), τ_min) at step t, where the annealing
#: length T_a is the run's steps up to ANNEAL_STEPS. Longer runs spend their extra steps near
#: hard rounding: annealing slowly over 200 or 500 steps let the latent drift, and at width
#: 192 it ended no better than the plain latent on the photos of ``benchmarks/refine.py``.
TAU_START, TAU_MIN, ANNEAL, ANNEAL_STEPS = 0.5, 0.02, 4.0, 100
#: The hard loss is measured at the start and over this last share of the steps, where
#: the annealed relaxation is close to rounding (earlier latents are rarely the best).
HARD_TAIL = 0.2


def step_size(steps: int) -> float:
    """The factorized refinement's default step size for a run of ``steps`` steps."""
    return SHORT_RUN_LR if steps <= SHORT_RUN_STEPS else DEFAULT_LR


def steps_for_effort(effort: int) -> int:
    if not 0 <= effort < len(EFFORT_STEPS):
        raise ValueError(f"effort {effort} is outside 0..{len(EFFORT_STEPS) - 1}")
    return EFFORT_STEPS[effort]


@dataclass
class RefineResult:
    """A refined latent, and the surrogate's view of the gain (the codec then compares the
    plain and refined files as decoded and coded)."""

    symbols: np.ndarray  # (C, h, w) int32
    loss_plain: float  # hard RD loss of the plain latent, summed over tile windows
    loss_refined: float  # the same for the refined latent
    steps: int  # gradient steps run per tile


def _bits(model: SlimCAE, values: Tensor) -> Tensor:
    """Bits of ``values`` (1, C, h, w) under the active entropy model, as its forward counts
    them (compressai's likelihood bound included)."""
    eb = model.entropy_bottleneck
    likelihood, _, _ = eb._likelihood(values[0].reshape(values.shape[1], 1, -1))
    if eb.use_likelihood_bound:
        likelihood = eb.likelihood_lower_bound(likelihood)
    return -torch.log2(likelihood).sum()


def refine_latent(
    model: SlimCAE,
    rgb: np.ndarray,
    lmbda: float,
    steps: int,
    lr: float | None = None,
    relaxation: str = "sga",
    tile: int = tiling.DEFAULT_TILE,
    halo: int = tiling.DEFAULT_HALO,
    progress: Callable[[int], None] | None = None,
) -> RefineResult:
    """The refined integer latent of ``rgb`` at the model's active width (and λ).

    ``lmbda`` weighs distortion against rate in the loss (the width's training λ for a
    single-rate model, the file's λ for a variable-rate one); ``relaxation`` is one of
    :data:`RELAXATIONS` (see the module docstring); ``lr``: Adam's step size (None:
    :func:`step_size`). ``progress(1)`` is called after every step of every tile. The
    model's parameters are not changed.
    """
    if steps < 0:
        raise ValueError("steps must be >= 0")
    lr = step_size(steps) if lr is None else lr
    if relaxation not in RELAXATIONS:
        raise ValueError(f"unknown relaxation {relaxation!r}; expected one of {RELAXATIONS}")
    # Gradients are needed even when called from inference code (the codec's lock holds
    # the model in inference mode).
    with torch.inference_mode(False), torch.enable_grad():
        return _refine(model, rgb, _Objective(model, lmbda, relaxation), steps, lr, tile,
                       halo, progress)


def _refine(model: SlimCAE, rgb: np.ndarray, objective: _Objective, steps: int, lr: float,
            tile: int, halo: int, progress: Callable[[int], None] | None) -> RefineResult:
    factor = model.downsampling
    height, width = rgb.shape[:2]
    lh, lw = -(-height // factor), -(-width // factor)
    medians = objective.medians
    with torch.no_grad():  # the unrounded latent, analysed tile by tile as the codec does
        y_all = torch.from_numpy(tiling.analyze(
            lambda a: model.analysis(torch.from_numpy(a)).numpy(), rgb, factor,
            lambda a: a, tile, halo))
    total_plain = total_refined = 0.0
    for top, bottom, r0, r1 in tiling.spans(lh, tile, halo):
        for left, right, c0, c1 in tiling.spans(lw, tile, halo):
            rows = (r0 * factor, min(r1 * factor, height))
            cols = (c0 * factor, min(c1 * factor, width))
            x = torch.from_numpy(tiling.padded_region(rgb, rows, cols))
            context = torch.round(y_all[None, :, r0:r1, c0:c1] - medians) + medians
            core = (slice(None), slice(None), slice(top - r0, bottom - r0),
                    slice(left - c0, right - c0))
            y = y_all[None, :, top:bottom, left:right].clone()
            best_y, best, plain = _optimise(objective.on(x, context, core), y, steps, lr,
                                            progress)
            y_all[:, top:bottom, left:right] = best_y[0]
            total_plain += plain
            total_refined += best
    symbols = torch.round(y_all - medians).int().numpy()
    return RefineResult(symbols, total_plain, total_refined, steps)


def refine_strings(model: SlimCAE, latent: Any, y: np.ndarray, rgb: np.ndarray, lmbda: float,
                   steps: int, relaxation: str = "sga", tile: int = tiling.DEFAULT_TILE,
                   progress: Callable[[int], None] | None = None, lr: float | None = None
                   ) -> tuple[bytes, ...]:
    """The container strings of ``rgb``'s refined latent, for the model's latent coder
    ``latent`` (:mod:`slimcodec.latent`) and its unrounded latent ``y``: the one place that
    picks the refinement a kind of coder needs. ``lr``: Adam's step size (None: that
    refinement's default: :data:`HYPERPRIOR_LR`, or :func:`step_size` of ``steps``)."""
    from slimcodec.latent import HyperpriorCoder

    if isinstance(latent, HyperpriorCoder):
        if relaxation != "sga":
            raise ValueError("hyperprior refinement relaxes rounding by SGA only")
        y_refined, z_symbols = refine_hyperprior(model, rgb, lmbda, steps, y,
                                                 lr=HYPERPRIOR_LR if lr is None else lr,
                                                 progress=progress)
        return latent.encode(y_refined, z_symbols=z_symbols)
    symbols = refine_latent(model, rgb, lmbda, steps, lr=lr, relaxation=relaxation,
                            tile=tile, progress=progress).symbols
    return latent.encode_symbols(symbols)


def refine_hyperprior(model: Any, rgb: np.ndarray, lmbda: float, steps: int, y: np.ndarray,
                      lr: float = HYPERPRIOR_LR, progress: Callable[[int], None] | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    r"""A hyperprior model's refined unrounded latent and :math:`\hat z` symbols for
    ``rgb``, from its plain latent ``y`` (see the module docstring)."""
    if steps < 0:
        raise ValueError("steps must be >= 0")
    with torch.inference_mode(False), torch.enable_grad():
        objective = _HyperObjective(model, lmbda, rgb, torch.from_numpy(np.array(y)))
        best, _, _ = _optimise(objective, objective.start(), steps, lr, progress)
        y_best, z_best = objective.split(best)
        z_symbols = torch.round(z_best - objective.z_medians).int()[0].numpy()
        return y_best[0].numpy(), z_symbols


class _HyperObjective:
    """The RD loss of a hyperprior model over (y, z), packed in one flat tensor."""

    def __init__(self, model: Any, lmbda: float, rgb: np.ndarray, y: Tensor) -> None:
        self.model, self.lmbda = model, lmbda
        h, w = rgb.shape[:2]
        factor = model.downsampling
        self.x = torch.from_numpy(tiling.padded_region(
            rgb, (0, -(-h // factor) * factor), (0, -(-w // factor) * factor)))[..., :h, :w]
        self.y_shape = (1, *y.shape)
        padded = pad_to_multiple(y[None], 4)  # as the model pads for its hyper transforms
        eb = model.entropy_bottleneck
        self.z_medians = eb._get_medians().detach()
        with torch.no_grad():
            self.z0 = model.hyper_analysis(padded)
        self.y0 = y[None]
        self.generator = torch.Generator().manual_seed(0)

    def start(self) -> Tensor:
        return torch.cat((self.y0.reshape(-1), self.z0.reshape(-1)))

    def split(self, v: Tensor) -> tuple[Tensor, Tensor]:
        n = self.y0.numel()
        return v[:n].reshape(self.y_shape), v[n:].reshape(self.z0.shape)

    def _loss(self, relax_y: Callable[[Tensor], Tensor], z_tilde: Tensor, clamp: bool
              ) -> Tensor:
        """The loss with :math:`\tilde z` and :math:`\tilde y` = ``relax_y(means)``."""
        model, (h, w) = self.model, self.x.shape[-2:]
        means, scales = model.conditionals(z_tilde - self.z_medians, self.y_shape[2:])
        gc = model.gaussian_conditional
        y_tilde, means = model.latent_means(means, relax_y)
        y_lik = gc.likelihood_lower_bound(gc._likelihood(y_tilde, scales, means))
        out = model.synthesis(y_tilde)[..., :h, :w]
        if clamp:
            out = out.clamp(0, 1)
        mse = F.mse_loss(out, self.x, reduction="sum") / (3 * h * w)
        bits = _bits(model, z_tilde) - torch.log2(y_lik).sum()
        return self.lmbda * 255**2 * mse + bits / (h * w)

    def relaxed(self, v: Tensor, tau: float) -> Tensor:
        y, z = self.split(v)
        z_tilde = sga_round(z - self.z_medians, tau, self.generator) + self.z_medians
        return self._loss(lambda mu: sga_round(y - mu, tau, self.generator) + mu, z_tilde,
                          clamp=False)

    def hard(self, v: Tensor) -> float:
        with torch.no_grad():
            y, z = self.split(v)
            z_hat = torch.round(z - self.z_medians) + self.z_medians
            loss = self._loss(lambda mu: torch.round(y - mu) + mu, z_hat, clamp=True)
            return float(loss) * self.x.shape[-2] * self.x.shape[-1]


def sga_round(v: Tensor, tau: float, generator: torch.Generator | None = None) -> Tensor:
    """Stochastic Gumbel annealing of ``round(v)`` (Yang et al. 2020, eq. 5): a soft sample
    between ``floor(v)`` and ``floor(v) + 1``, the nearer more likely; hard as τ → 0."""
    lower = torch.floor(v)
    up = v - lower  # distance to the lower integer, in [0, 1)
    eps = 1e-5  # atanh(1) is infinite
    logits = torch.stack((-torch.atanh(up.clamp(max=1 - eps)),
                          -torch.atanh((1 - up).clamp(max=1 - eps))), dim=-1) / tau
    uniform = torch.rand(logits.shape, generator=generator).clamp(1e-10, 1 - 1e-7)
    gumbel = -torch.log(-torch.log(uniform))
    return lower + torch.softmax(logits + gumbel, dim=-1)[..., 1]


class _Objective:
    """The RD loss of one width (and λ) over a latent, relaxed and hard, on one window."""

    def __init__(self, model: SlimCAE, lmbda: float, relaxation: str) -> None:
        self.model, self.lmbda, self.relaxation = model, lmbda, relaxation
        self.medians = model.entropy_bottleneck._get_medians().detach()
        self.x = self.context = self.core = None
        # Its own seeded noise: the same image and settings give the same file.
        self.generator = torch.Generator().manual_seed(0)

    def on(self, x: Tensor, context: Tensor, core: tuple) -> _Objective:
        """Measure against the pixels ``x``, the window's other latents held at
        ``context`` and the optimised ones placed at ``core``."""
        self.x, self.context, self.core = x, context, core
        return self

    def _loss(self, y_for_synthesis: Tensor, y_for_rate: Tensor, clamp: bool) -> Tensor:
        h, w = self.x.shape[-2:]
        full = self.context.clone()
        full[self.core] = y_for_synthesis
        out = self.model.synthesis(full)[..., :h, :w]
        if clamp:  # the decoder's 8-bit output saturates
            out = out.clamp(0, 1)
        mse = F.mse_loss(out, self.x, reduction="sum") / (3 * h * w)
        return self.lmbda * 255**2 * mse + _bits(self.model, y_for_rate) / (h * w)

    def relaxed(self, y: Tensor, tau: float) -> Tensor:
        """The differentiable surrogate, at SGA temperature ``tau``."""
        if self.relaxation == "ste":
            y_hat = quantize_ste(y - self.medians) + self.medians
            noisy = y + torch.rand(y.shape, generator=self.generator) - 0.5
            return self._loss(y_hat, noisy, clamp=False)
        y_tilde = sga_round(y - self.medians, tau, self.generator) + self.medians
        return self._loss(y_tilde, y_tilde, clamp=False)

    def hard(self, y: Tensor) -> float:
        """The loss of the rounded latent, in bits-equivalent over the window."""
        with torch.no_grad():
            y_hat = torch.round(y - self.medians) + self.medians
            return float(self._loss(y_hat, y_hat, clamp=True)) * self.x.shape[-2] * \
                self.x.shape[-1]


def _optimise(objective: _Objective, y0: Tensor, steps: int, lr: float,
              progress: Callable[[int], None] | None) -> tuple[Tensor, float, float]:
    """Adam on one tile's latent. Returns the latent of the best hard loss seen (the
    start's included), that loss and the start's, both in bits-equivalent over the window."""
    plain = best = objective.hard(y0)
    best_y = y0.clone()
    y = y0.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([y], lr=lr)
    tail = steps - math.ceil(HARD_TAIL * steps)
    anneal = min(steps, ANNEAL_STEPS)
    for step in range(steps):
        tau = max(TAU_START * math.exp(-ANNEAL * step / anneal), TAU_MIN)
        for group in optimizer.param_groups:  # linear decay to zero
            group["lr"] = lr * (1 - step / steps)
        optimizer.zero_grad(set_to_none=True)
        # Gradients for the latent only: the weights' would double the backward pass.
        objective.relaxed(y, tau).backward(inputs=[y])
        optimizer.step()
        if step >= tail:  # the latent this step produced
            hard = objective.hard(y.detach())
            if hard < best:
                best, best_y = hard, y.detach().clone()
        if progress is not None:
            progress(1)
    return best_y, best, plain
