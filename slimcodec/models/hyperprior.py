r"""SlimCAE-HP: the variable-rate slimmable autoencoder with a mean-scale hyperprior.

The transforms are :class:`~slimcodec.models.ModulatedSlimCAE`'s (SlimCAE's slimmable
``g_a``/``g_s``, λ-modulation, latent gain); the factorized prior on :math:`\hat y` is
replaced by the mean-scale hyperprior of Minnen, Ballé, Toderici, "Joint Autoregressive and
Hierarchical Priors for Learned Image Compression" (NeurIPS 2018), without its serial
context model:

.. math::

    z = h_a(y), \quad \hat z = \lfloor z - \mu_z \rceil + \mu_z, \quad
    \mu = h_\mu(\hat z - \mu_z), \quad \sigma = \exp h_\sigma(\hat z - \mu_z),

    p(\hat y \mid \hat z) = \prod_i \big(\mathcal N(\mu_i, \sigma_i^2) * \mathcal U(-\tfrac12,
    \tfrac12)\big)(\hat y_i), \qquad \hat y = \lfloor y - \mu \rceil + \mu.

.. code-block:: none

    h_a: conv 3x3 -> LReLU -> conv 5x5/2 -> LReLU -> conv 5x5/2          (w -> w -> w -> w)
    h_μ: deconv 5x5/2 -> LReLU -> deconv 5x5/2 -> LReLU -> conv 3x3      (w -> h -> h -> w)
    h_σ: deconv 5x5/2 -> ReLU  -> deconv 5x5/2 -> ReLU  -> conv 3x3      (w -> h -> h -> w)

with ``h = hyper_hidden · w`` hidden channels (1 in ``slimcae-hp``). Both syntheses run on
the decoder's path, most of their multiply-adds in the last layer at the latent's
resolution; ``hyper_hidden = 1/2`` divides their cost by about 2.5.

Every hyper layer is slimmable like the transforms (the width-``w`` codec uses the first
``w`` channels of each, as SlimVC slims its hyper-codec per width), :math:`\hat z` has one
factorized ``EntropyBottleneck`` per width, and :math:`\hat y` one compressai
``GaussianConditional`` over a table of 64 log-spaced scales shared by all widths. The two
latents are two strings in the container (:mod:`slimcodec.latent`, ``docs/bitstream.md``).

**Decoding that cannot drift.** At test time :math:`h_\sigma` does not run in float: its
integer counterpart (:mod:`slimcodec.integer_scales`) maps the symbols of :math:`\hat z`
to table indexes, bit-identically in every runtime. The means stay float (a different mean
shifts a reconstruction by a fraction of a level, it cannot desynchronise the coder).
Training runs :math:`h_\sigma` in float and tracks the range of its activations per width;
:meth:`update` derives the integer network from the stored weights and ranges (elementwise
IEEE arithmetic, the same on every machine), and an exported bundle stores the integers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from compressai.entropy_models import GaussianConditional
from compressai.ops import quantize_ste
from torch import Tensor, nn

from slimcodec.integer_scales import (
    ACTIVATION_MAX,
    WEIGHT_MAX,
    IntegerLayer,
    IntegerScaleNet,
)
from slimcodec.layers import SlimConv2d, SlimConvTranspose2d, Slimmable
from slimcodec.utils.tensors import pad_to_multiple

from .modulated import DEFAULT_LAMBDA_RANGES, ModulatedSlimCAE
from .slimcae import DEFAULT_WIDTHS, float32_entropy, quantised_tables

__all__ = ["SCALE_TABLE", "HyperpriorSlimCAE", "ScaleSynthesis"]

#: The scales :math:`\hat y`'s CDFs are built for: 64 log-spaced from 0.11 to 256, as
#: compressai's ``get_scale_table``; index ``k`` is :math:`\exp(\ln 0.11 + k\,\delta)`.
SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 256.0, 64
SCALE_TABLE = np.exp(np.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_LEVELS))
_LOG_STEP = math.log(SCALE_MAX / SCALE_MIN) / (SCALE_LEVELS - 1)
# Activations are mapped to integers with this much headroom over their tracked range.
_HEADROOM = 2.0


def _hyper_synthesis(widths: Sequence[int], hidden: Sequence[int],
                     act: type[nn.Module]) -> list[nn.Module]:
    return [SlimConvTranspose2d(widths, hidden, 5, stride=2), act(),
            SlimConvTranspose2d(hidden, hidden, 5, stride=2), act(),
            SlimConv2d(hidden, widths, 3)]


def numpy_network(fn: Callable[[Tensor], Tensor]) -> Callable[[np.ndarray], np.ndarray]:
    """A torch network as a latent coder calls it: ``(C, h, w)`` float32 -> numpy."""
    def run(a: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(a, np.float32))[None]
            return fn(x)[0].numpy()
    return run


def hidden_widths(widths: Sequence[int], fraction: float) -> tuple[int, ...]:
    """The hyper-syntheses' hidden channels at each width: ``fraction`` of it, at least 1."""
    return tuple(max(1, round(w * fraction)) for w in widths)


class ScaleSynthesis(Slimmable):
    r""":math:`h_\sigma`: symbols of :math:`\hat z` -> :math:`\ln\sigma`, with an integer twin.

    While its own weights train (training mode, gradients on), it records per width a
    running average of each hidden activation's batch maximum (``act_max``), from which
    :meth:`integer_net` picks the activations' integer scales. A frozen copy (a domain
    adapter training around the source model) records nothing: the source stays as it was.
    """

    def __init__(self, widths: Sequence[int], momentum: float = 0.01,
                 hidden: Sequence[int] | None = None) -> None:
        super().__init__(len(widths))
        self.widths = tuple(widths)
        self.layers = nn.Sequential(*_hyper_synthesis(self.widths, hidden or self.widths,
                                                      nn.ReLU))
        self.momentum = momentum
        self.register_buffer("act_max", torch.ones(len(self.widths), 2))

    def set_width_index(self, index: int) -> None:
        super().set_width_index(index)
        for layer in self.layers:
            if isinstance(layer, Slimmable):
                layer.set_width_index(index)

    def forward(self, q: Tensor) -> Tensor:
        x, hidden = q, 0
        track = self.training and self.layers[0].weight.requires_grad
        for layer in self.layers:
            x = layer(x)
            if isinstance(layer, nn.ReLU):
                if track:
                    with torch.no_grad():
                        peak = x.detach().amax()
                        stat = self.act_max[self.width_index, hidden]
                        stat.mul_(1 - self.momentum).add_(self.momentum * peak)
                hidden += 1
        return x

    def integer_net(self) -> IntegerScaleNet:
        """The integer network of the active width (see :mod:`slimcodec.integer_scales`)."""
        k = self.width_index
        convs = [m for m in self.layers if isinstance(m, (SlimConv2d, SlimConvTranspose2d))]
        in_scale = 1.0  # the symbols themselves
        layers = []
        for i, conv in enumerate(convs):
            # (out, in, k, k) for both kinds; a transposed kernel is (in, out, k, k).
            full = conv.weight.detach().double().cpu()
            full = full.transpose(0, 1) if conv.transposed else full
            c_out, c_in = conv.out_widths[k], conv.in_widths[k]
            w = full[:c_out, :c_in]
            # Per output channel, from the full-width kernel: the same integers at every width.
            peak = full.abs().amax(dim=(1, 2, 3))[:c_out].clamp_min(1e-12)
            w_scale = WEIGHT_MAX / peak
            w_int = torch.round(w * w_scale[:, None, None, None])
            b = conv.bias.detach().double().cpu()[:c_out]
            b_int = torch.round(b * w_scale * in_scale)
            if i < len(convs) - 1:
                # A range never seen above zero (an untrained width) still maps to integers.
                peak_act = max(float(self.act_max[self.width_index, i]), 1e-6)
                out_scale = ACTIVATION_MAX / (_HEADROOM * peak_act)
                multiplier = out_scale / (w_scale * in_scale)
                in_scale = out_scale
            else:  # ln σ -> table position: (ln σ - ln σ_0) / δ + 1/2, floored by the net
                multiplier = 1.0 / (w_scale * in_scale * _LOG_STEP)
            layers.append(IntegerLayer(w_int.numpy(), b_int.numpy(), multiplier.numpy(),
                                       conv.stride if conv.transposed else 1))
        return IntegerScaleNet(tuple(layers), 0.5 - math.log(SCALE_MIN) / _LOG_STEP,
                               SCALE_LEVELS)


class HyperpriorSlimCAE(ModulatedSlimCAE):
    """Variable-rate SlimCAE with a slimmable mean-scale hyperprior.

    Args:
        widths, gdn, lambda_ranges, hidden, latent_gain, lambda_bounds: as
            :class:`~slimcodec.models.ModulatedSlimCAE` (one entropy model per width: the
            hyperprior adapts to λ through :math:`\\hat z`).

    ``entropy_bottlenecks`` (one per width) code :math:`\\hat z`;
    ``gaussian_conditional`` codes :math:`\\hat y`.
    """

    latent_kind = "hyperprior"
    #: Training only: skip the synthesis and return no ``x_hat`` (``slimcodec train --stage
    #: entropy``, where only the entropy model trains, on the rate). Not in :attr:`config`.
    rate_only: bool = False
    #: Training only: the rate the coder pays instead of its relaxation. Each element's
    #: symbol :math:`\lfloor y - \mu \rceil` is priced, and the hyper-syntheses see
    #: :math:`\hat z`'s symbols, both rounded as in :meth:`compress` with a straight-through
    #: gradient (``slimcodec train --rate-quantizer ste``); :math:`\hat z`'s own rate keeps
    #: the noise. (Uniform noise prices a latent element the coder sends for almost nothing,
    #: :math:`\sigma` at the table's floor and :math:`y` at its mean, at up to a bit;
    #: ``docs/gpu_training.md`` has what fine-tuning on the coded rate measured.) Not in
    #: :attr:`config`.
    ste_rate: bool = False
    #: What ``--stage entropy`` trains (parameter name prefixes).
    ENTROPY_PARAMETERS = ("h_a.", "h_mean.", "h_scale.", "entropy_bottlenecks.",
                          "gaussian_conditional.")
    # h_a runs only in the encoder: the decoder reads z's symbols.
    ENCODER_PARAMETERS = ("g_a.", "modulation_a.", "h_a.")

    def __init__(
        self,
        widths: Sequence[int] = DEFAULT_WIDTHS,
        gdn: str = "slim+",
        lambda_ranges: Sequence[Sequence[float]] = DEFAULT_LAMBDA_RANGES,
        hidden: int = 50,
        latent_gain: bool = True,
        lambda_bounds: Sequence[float] | None = None,
        hyper_hidden: float = 1.0,
    ) -> None:
        super().__init__(widths, gdn, lambda_ranges, rate_anchors=1, hidden=hidden,
                         latent_gain=latent_gain, lambda_bounds=lambda_bounds)
        if not 0 < hyper_hidden <= 1:
            raise ValueError(f"hyper_hidden {hyper_hidden} must lie in (0, 1]")
        self.hyper_hidden = float(hyper_hidden)
        w = self.widths
        h = hidden_widths(w, hyper_hidden)
        self.h_a = nn.Sequential(SlimConv2d(w, w, 3), nn.LeakyReLU(),
                                 SlimConv2d(w, w, 5, stride=2), nn.LeakyReLU(),
                                 SlimConv2d(w, w, 5, stride=2))
        self.h_mean = nn.Sequential(*_hyper_synthesis(w, h, nn.LeakyReLU))
        self.h_scale = ScaleSynthesis(w, hidden=h)
        # The means start at 0 and the scales at 1: a new hyperprior is a zero-mean,
        # unit-scale Gaussian until it learns.
        for last in (self.h_mean[-1], self.h_scale.layers[-1]):
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        self.gaussian_conditional = GaussianConditional(SCALE_TABLE.tolist())
        # Width index -> integer scale network, derived by update() (not a state entry).
        self._integer_nets: dict[int, IntegerScaleNet] = {}
        self._slimmable = tuple(m for m in self.modules() if isinstance(m, Slimmable))

    @property
    def config(self) -> dict[str, Any]:
        config = dict(super().config)
        del config["rate_anchors"]  # always one
        if self.hyper_hidden != 1.0:  # models written before the option have none
            config["hyper_hidden"] = self.hyper_hidden
        return config

    def anchor_index(self, lmbda: float) -> int:
        return 0

    # -- the hyperprior ---------------------------------------------------------------------

    def hyper_analysis(self, y: Tensor) -> Tensor:
        """:math:`z = h_a(y)` at the active width."""
        return self.h_a(y)

    def hyper_mean(self, z_symbols: Tensor) -> Tensor:
        """:math:`\\mu = h_\\mu(\\hat z - \\mu_z)` from the symbols of :math:`\\hat z`."""
        return self.h_mean(z_symbols)

    def conditionals(self, q: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        r"""The float means and scales of the latent from ``q``, the (relaxed) symbols of
        :math:`\hat z`, cropped to the latent's ``size`` (training and refinement; coding
        takes its scales from :meth:`scale_net`)."""
        h, w = size
        # Scales beyond the table's last are coded with it: bounding them here keeps an
        # exploding prediction from overflowing exp (and the gradient) in training.
        scales = torch.exp(self.h_scale(q)[..., :h, :w].clamp(max=math.log(SCALE_MAX)))
        return self.hyper_mean(q)[..., :h, :w], scales

    def scale_net(self) -> IntegerScaleNet:
        """The active width's integer scale network (built by :meth:`update`)."""
        net = self._integer_nets.get(self._width_index)
        if net is None:
            raise RuntimeError("integer scale network not built: call model.update() first")
        return net

    def update(self, scale_table: Any = None, force: bool = False,
               update_quantiles: bool = False) -> bool:
        """Build :math:`\\hat z`'s CDF tables, :math:`\\hat y`'s (for :data:`SCALE_TABLE`)
        and every width's integer scale network."""
        updated = False
        for eb in self.entropy_bottlenecks:
            updated |= eb.update(force=force, update_quantiles=update_quantiles)
        updated |= self.gaussian_conditional.update_scale_table(SCALE_TABLE.tolist(),
                                                                force=force)
        previous = self.h_scale.width_index
        nets = {}
        for index in range(len(self.widths)):
            self.h_scale.set_width_index(index)
            nets[index] = self.h_scale.integer_net()
        self.h_scale.set_width_index(previous)
        self._integer_nets = nets
        return updated

    # -- CompressionModel API -------------------------------------------------------------

    def forward(self, x: Tensor, lmbda: Tensor | None = None) -> dict[str, Any]:
        """Relaxed (training) or quantised (eval) pass at the active width and λ (or each
        image at its own, ``lmbda`` ``(N,)``); the likelihoods of both latents, as
        compressai's hyperprior models return them."""
        lmbda = self.lambdas_for(x, lmbda)
        with torch.no_grad() if self.rate_only and self.training else nullcontext():
            y = self.analysis(x, lmbda)
        with float32_entropy(y):  # the hyperprior and both densities: never in bf16
            y = y.float()
            # As the coder does (slimcodec.latent): a latent whose sides are not multiples
            # of 4 is padded for the hyper transforms, and the predictions cropped back.
            h, w = y.shape[-2:]
            z = self.hyper_analysis(pad_to_multiple(y, 4))
            eb = self.entropy_bottleneck
            z_hat, z_likelihoods = eb(z)
            coded_rate = self.training and self.ste_rate
            q = quantize_ste(z - eb._get_medians()) if coded_rate else z_hat - eb._get_medians()
            means, scales = self.conditionals(q, (h, w))
            y_hat, y_likelihoods = self._latent_likelihoods(y, means, scales, coded_rate)
        if self.training and self.rate_only:
            return {"x_hat": None, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}
        if self.training and self.ste_decoder:
            y_hat, _ = self.latent_means(means, lambda mu: quantize_ste(y - mu) + mu)
        x_hat = self.synthesis(y_hat, lmbda)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    def latent_means(self, means: Tensor, relax: Callable[[Tensor], Tensor]
                     ) -> tuple[Tensor, Tensor]:
        r"""The (relaxed) :math:`\hat y` and the means it is coded around, from the hyper
        means and ``relax``, which rounds the latent around given means (or relaxes that
        rounding): here every element at once. A model with a context
        (:class:`~slimcodec.models.CheckerboardSlimCAE`) decodes in steps, its later
        elements' means depending on the earlier ones' values; training, refinement and
        the coder all go through this one method."""
        return relax(means), means

    def _latent_likelihoods(self, y: Tensor, means: Tensor, scales: Tensor,
                            coded_rate: bool) -> tuple[Tensor, Tensor]:
        r""":math:`\hat y` (relaxed in training) and each element's probability under its
        Gaussian: the symbols the coder sends with a straight-through gradient
        (:attr:`ste_rate`), uniform noise (the coder in training mode), or rounding, as
        compressai's ``GaussianConditional`` relaxes it."""
        gc = self.gaussian_conditional
        if coded_rate:
            def relax(mu: Tensor) -> Tensor:
                return quantize_ste(y - mu) + mu
        elif gc.training:  # (the coder's own mode: probe_run.py --relaxed sets it alone)
            noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)

            def relax(mu: Tensor) -> Tensor:
                return noisy
        else:
            def relax(mu: Tensor) -> Tensor:
                return torch.round(y - mu) + mu
        y_hat, means = self.latent_means(means, relax)
        likelihoods = gc._likelihood(y_hat, scales, means)
        if gc.use_likelihood_bound:
            likelihoods = gc.likelihood_lower_bound(likelihoods)
        return y_hat, likelihoods

    def compress(self, x: Tensor) -> dict[str, Any]:
        """Entropy-code a batch: two strings per image (:math:`\\hat z`, then :math:`\\hat y`)."""
        coder = self.latent_coder()
        y = self.analysis(x).detach().cpu().numpy()
        strings = [coder.encode(y[i]) for i in range(len(y))]
        return {"strings": [list(s) for s in zip(*strings, strict=True)],
                "shape": tuple(y.shape[-2:])}

    def decompress(self, strings: list[list[bytes]], shape: Sequence[int]) -> dict[str, Tensor]:
        coder = self.latent_coder()
        latents = [coder.decode(tuple(s), (int(shape[0]), int(shape[1])))
                   for s in zip(*strings, strict=True)]
        y_hat = torch.from_numpy(np.stack(latents))
        return {"x_hat": self.synthesis(y_hat).clamp_(0, 1)}

    def latent_coder(self) -> Any:
        """How the active width codes its latent (:class:`slimcodec.latent.HyperpriorCoder`)."""
        from slimcodec.latent import HyperpriorCoder

        eb = self.entropy_bottleneck
        medians = eb._get_medians().detach().reshape(-1).cpu().numpy()
        return HyperpriorCoder(medians, self.entropy_tables(), self.scale_net(),
                               self.gaussian_tables(), numpy_network(self.hyper_analysis),
                               numpy_network(self.hyper_mean))

    def coder_networks(self, side: str | None = None) -> dict[str, nn.Module]:
        r""":math:`h_a` (latent -> z) and :math:`h_\mu` (symbols of :math:`\hat z` -> means),
        in coding order, at the active width: the exporter's hyper graphs. :math:`h_\sigma`
        is not among them: its integer twin is arrays (:meth:`latent_coder`'s)."""
        if side == "decoder":
            return {"hyper_mean": self.h_mean}
        return {"hyper_analysis": self.h_a, "hyper_mean": self.h_mean}

    def coder_integer_macs(self, latent_size: tuple[int, int]) -> int:
        r"""The integer :math:`h_\sigma`'s multiply-adds (encoder and decoder each run it)."""
        h, w = (-(-s // 4) for s in latent_size)
        return self.scale_net().macs((h, w))

    def gaussian_tables(self) -> Any:
        """The quantised CDFs of the latent's Gaussians, one per table scale."""
        return quantised_tables(self.gaussian_conditional)

    def load_state_dict(self, state_dict: dict[str, Tensor], strict: bool = True) -> Any:
        gc = self.gaussian_conditional
        for name in ("_quantized_cdf", "_offset", "_cdf_length", "scale_table"):
            key = f"gaussian_conditional.{name}"
            if key in state_dict:
                getattr(gc, name).resize_(state_dict[key].shape)
        result = super().load_state_dict(state_dict, strict=strict)
        if self.gaussian_conditional._quantized_cdf.numel():
            self.update()  # the integer nets follow the loaded weights and ranges
        return result

