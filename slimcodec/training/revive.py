r"""Reviving latent channels the encoder has switched off (``slimcodec train --revive``).

A channel of :math:`y` is *dead* when the encoder sends the same value whatever the image:
its rate is below :data:`DEAD_BITS` per position at the widest width's top λ. In the
modulated models the encoder's last λ-modulation mostly does it: in ``slimcae-hp``, 97 of
192 channels are dead on the 12 test photos, every one above 143, and 94 of them have
:math:`m_3(\lambda)_c < 0.3` at λ = 0.8 (median 0.000), against a median of 1.14 for the
live channels (``benchmarks/dead_channels.py``). It is a trace of low-rate training that
training at higher rates has not undone: nothing rewards a channel that carries no
information. So the widest width codes little better than 144 (its own 48 channels are all
dead); whether the dead channels are what holds the top at the transforms' ceiling
(``benchmarks/latent_capacity.py``), training with them revived has not shown yet
(docs/gpu_training.md, "Reaching higher rates").

:func:`revive_channels` switches them on again: their rows of that modulation become the
live rows' mean, lowered by ``shift`` in log units so that they start small, and training
decides what they are worth. It does not leave the model's output as it was: a dead
channel's constant value reaches the decoder (its GDN norms and first layer), so changing it
moves every pixel a little. On ``slimcae-hp`` at shift -2 the widest width's top loses 0.15
dB at once, the narrowest nothing measurable. Without training, a revived model is worse.
"""

from __future__ import annotations

import torch
from torch import Tensor

from slimcodec.models import ModulatedSlimCAE

__all__ = ["DEAD_BITS", "dead_channels", "revive_channels"]

DEAD_BITS = 0.01  # bits per latent position below which a channel is dead


@torch.no_grad()
def dead_channels(model: ModulatedSlimCAE, images: Tensor) -> Tensor:
    """``(C,)`` bool: the channels dead at the widest width's top λ on ``images`` (N, 3, H,
    W in [0, 1]), that is with fewer than :data:`DEAD_BITS` bits per position in every one."""
    was_training, width, lmbda = model.training, model.width, model.lmbda
    model.eval()
    try:
        model.set_width(max(model.widths))
        model.set_lambda(model.lambda_range(model.width)[1])
        rate = None
        for x in images.split(1):
            likelihoods = model(x)["likelihoods"]["y"]
            bits = -torch.log2(likelihoods).mean(dim=(0, 2, 3))
            rate = bits if rate is None else torch.maximum(rate, bits)
    finally:
        model.set_width(width)
        model.set_lambda(lmbda)
        model.train(was_training)
    return rate < DEAD_BITS


@torch.no_grad()
def revive_channels(model: ModulatedSlimCAE, dead: Tensor, shift: float = -2.0) -> int:
    """Switch the ``dead`` channels on (module doc); returns how many were revived.
    ``shift``: the revived channels' modulation against the live channels' mean, in log
    units (-2: about a seventh of a live channel's scale)."""
    dead = dead.to(torch.bool)
    live = ~dead
    if not dead.any():
        return 0
    if not live.any():
        raise ValueError("no live channel to revive the others from")
    modulation = model.modulation_a[-1].out
    modulation.weight[dead] = modulation.weight[live].mean(dim=0)
    modulation.bias[dead] = modulation.bias[live].mean() + shift
    return int(dead.sum())

