r"""Content-adaptive encoding: refine each image's latent by gradient descent, decoder unchanged.

After L²C (Zou et al., "Learning to Learn to Compress") and the latent optimisation of Yang,
Bamler and Mandt ("Improving Inference for Neural Image Compression", NeurIPS 2020): starting
from :math:`y_0 = g_a(x)`, a bounded number of Adam steps lower the rate-distortion loss of
the width (and λ) over the latent alone,

.. math::

    L(y) = \lambda \cdot 255^2 \cdot \mathrm{MSE}\big(x, g_s(\lfloor y - \mu \rceil_{ste}
           + \mu)\big) + \frac{-\log_2 p(y + u)}{HW}, \qquad u \sim U(-\tfrac12, \tfrac12),

the distortion through straight-through rounding (the decoder sees exactly the rounded
latent it will decode) and the rate through uniform noise (a smooth surrogate of the rounded
latent's rate), with a step size decaying linearly to zero. Every step also evaluates the
*hard* loss of the rounded latent it used (the MSE of that synthesis, the rate under the
model's density of the rounded values), and each tile keeps the best latent seen, the plain
encoder's included. The codec (:meth:`slimcodec.codec.Codec.encode_rgb`) then codes both the
plain and the refined latent and keeps the file whose loss, from its real bytes and its
decoded 8-bit pixels, is lower: a refined file is never worse than the plain one.

Large images are refined tile by tile (:mod:`slimcodec.tiling`'s tiles): each tile's latent
is optimised against the pixels its synthesis window covers, its neighbours' latents held at
their current values, so memory stays bounded. The result is an ordinary file: the decoder,
the container and the entropy coder are untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from compressai.ops import quantize_ste
from torch import Tensor

from slimcodec import tiling
from slimcodec.models import SlimCAE

__all__ = [
    "DEFAULT_LR",
    "DEFAULT_REFINE_STEPS",
    "EFFORT_STEPS",
    "RefineResult",
    "refine_latent",
    "steps_for_effort",
]

#: ``--effort`` levels (0-6, as ``cwebp -m``) and the refinement steps each runs.
EFFORT_STEPS = (0, 10, 25, 50, 100, 200, 500)
#: ``--refine`` without a number (effort 4).
DEFAULT_REFINE_STEPS = 100
DEFAULT_LR = 0.01  # Adam step size: 0.003 and 0.03 both gained less on slimcae at 192 and 96


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
    lr: float = DEFAULT_LR,
    tile: int = tiling.DEFAULT_TILE,
    halo: int = tiling.DEFAULT_HALO,
    progress: Callable[[int], None] | None = None,
) -> RefineResult:
    """The refined integer latent of ``rgb`` at the model's active width (and λ).

    ``lmbda`` weighs distortion against rate in the loss (the width's training λ for a
    single-rate model, the file's λ for a variable-rate one). ``progress(1)`` is called
    after every step of every tile. The model's parameters are not changed.
    """
    if steps < 0:
        raise ValueError("steps must be >= 0")
    # Gradients are needed even when called from inference code (the codec's lock holds
    # the model in inference mode).
    with torch.inference_mode(False), torch.enable_grad():
        return _refine(model, rgb, lmbda, steps, lr, tile, halo, progress)


def _refine(model: SlimCAE, rgb: np.ndarray, lmbda: float, steps: int, lr: float, tile: int,
            halo: int, progress: Callable[[int], None] | None) -> RefineResult:
    factor = model.downsampling
    height, width = rgb.shape[:2]
    lh, lw = -(-height // factor), -(-width // factor)
    medians = model.entropy_bottleneck._get_medians().detach()
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
            best_y, best, plain = _optimise(model, x, y, context, core, medians, lmbda,
                                            steps, lr, progress)
            y_all[:, top:bottom, left:right] = best_y[0]
            total_plain += plain
            total_refined += best
    symbols = torch.round(y_all - medians).int().numpy()
    return RefineResult(symbols, total_plain, total_refined, steps)


def _optimise(model: SlimCAE, x: Tensor, y0: Tensor, context: Tensor, core: tuple,
              medians: Tensor, lmbda: float, steps: int, lr: float,
              progress: Callable[[int], None] | None) -> tuple[Tensor, float, float]:
    """Adam on one tile's latent. Returns the latent of the best hard loss seen (the
    start's included), that loss and the start's, both in bits-equivalent over the window."""
    h, w = x.shape[-2:]
    pixels = h * w

    def window(core_values: Tensor) -> Tensor:
        full = context.clone()
        full[core] = core_values
        return full

    def losses(y: Tensor) -> tuple[Tensor, Tensor, float]:
        """The surrogate loss (gradients) and the hard loss of the latent's rounding."""
        y_hat = quantize_ste(y - medians) + medians
        out = model.synthesis(window(y_hat))[..., :h, :w]
        mse = F.mse_loss(out, x, reduction="sum") / (3 * pixels)
        noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        surrogate = lmbda * 255**2 * mse + _bits(model, noisy) / pixels
        with torch.no_grad():
            mse_hard = F.mse_loss(out.clamp(0, 1), x, reduction="sum") / (3 * pixels)
            hard = lmbda * 255**2 * mse_hard + _bits(model, y_hat.detach()) / pixels
        return surrogate, mse, float(hard) * pixels

    with torch.no_grad():
        _, _, plain = losses(y0)
    best, best_y = plain, y0.clone()
    y = y0.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([y], lr=lr)
    for step in range(steps + 1):  # the last pass only measures the last update
        surrogate, _, hard = losses(y)
        if hard < best:
            best, best_y = hard, y.detach().clone()
        if step == steps:
            break
        for group in optimizer.param_groups:  # linear decay to zero
            group["lr"] = lr * (1 - step / steps)
        optimizer.zero_grad(set_to_none=True)
        surrogate.backward()
        optimizer.step()
        if progress is not None:
            progress(1)
    return best_y, best, plain

