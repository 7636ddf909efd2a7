r"""λ-modulation: a small network that maps the rate-distortion weight to channel scales.

After Yang, Herranz, van de Weijer, Mozerov, "Variable Rate Deep Image Compression with
Modulated Autoencoder", IEEE Signal Processing Letters 27, 2020. For each modulated layer,

.. math::

    m(\lambda) = \exp\big(W_2\, \mathrm{ReLU}(W_1 t + b_1) + b_2\big) \in \mathbb{R}_{>0}^{C},
    \qquad t = \frac{\ln\lambda - \ln\lambda_{\min}}{\ln\lambda_{\max} - \ln\lambda_{\min}},

and the feature map is multiplied channel-wise by :math:`m(\lambda)`. The output layer is
sliced to the active width like any slimmable op: width :math:`c` uses the first :math:`c`
rows of :math:`W_2, b_2`. :math:`W_2, b_2` start at zero, so a new modulation is the
identity and a modulated model starts out as the unmodulated one it may be initialised from.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .slimmable import Slimmable, leading

__all__ = ["LambdaModulation", "LatentGain"]


class LambdaModulation(Slimmable):
    """Normalised log λ ``(N,)`` -> positive scales ``(N, C, 1, 1)`` at the active width."""

    def __init__(self, widths: Sequence[int], hidden: int = 50) -> None:
        super().__init__(len(widths))
        self.widths = tuple(widths)
        self.hidden = nn.Linear(1, hidden)
        self.out = nn.Linear(hidden, max(self.widths))
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, t: Tensor) -> Tensor:
        c = self.widths[self.width_index]
        h = F.relu(self.hidden(t.reshape(-1, 1)))
        out = F.linear(h, leading(self.out.weight, c), leading(self.out.bias, c))
        return torch.exp(out)[..., None, None]


class LatentGain(Slimmable):
    r"""A per-channel gain on the latent, :math:`G_c(\lambda) = \exp(s_c \,\ell)`.

    :math:`\ell = \ln\lambda - \ln\lambda_{\mathrm{mid}}` is λ's log-distance from the middle
    of the model's bounds. Multiplying the latent by :math:`G` before rounding and dividing
    by it after is a quantisation step of :math:`1/G` (Cui et al., "Asymmetric Gained Deep
    Image Compression with Continuous Rate Adaptation", CVPR 2021). The slopes start at
    1/2, high-rate theory's step :math:`\propto \lambda^{-1/2}`, so a new model spans a wide
    range of rates from its first step; training adjusts them per channel.
    """

    def __init__(self, widths: Sequence[int], slope: float = 0.5) -> None:
        super().__init__(len(widths))
        self.widths = tuple(widths)
        self.slope = nn.Parameter(torch.full((max(self.widths),), float(slope)))

    def forward(self, log_ratio: Tensor) -> Tensor:
        """``(N,)`` log-distances (one per image, or one for all) -> ``(N, C, 1, 1)`` gains."""
        c = self.widths[self.width_index]
        return torch.exp(leading(self.slope, c) * log_ratio.reshape(-1, 1))[..., None, None]
