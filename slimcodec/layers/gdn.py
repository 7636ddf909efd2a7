r"""Generalized divisive normalization for slimmable networks, in three variants.

GDN (Ballé et al., "Density Modeling of Images Using a Generalized Normalization
Transformation", ICLR 2016) normalises each channel by a learned pool of the others:

.. math::

    y_i = \frac{x_i}{\sqrt{\beta_i + \sum_j \gamma_{ij} x_j^2}}, \qquad
    \text{inverse (IGDN)}: \; y_i = x_i \sqrt{\beta_i + \sum_j \gamma_{ij} x_j^2}.

With widths, the question is which :math:`\beta, \gamma` a narrow width uses. Yang et al.,
"Slimmable Compressive Autoencoders for Practical Neural Image Compression" (CVPR 2021),
compare:

* :class:`SwitchGDN` -- a private GDN per width (no sharing).
* :class:`SlimGDN` -- one full-width :math:`\beta, \gamma`; width :math:`c` uses
  :math:`\beta_{:c}` and :math:`\gamma_{:c,:c}`.
* :class:`SlimGDNPlus` (SlimGDN+) -- SlimGDN plus, for each width :math:`k`, non-negative
  scalars that rescale and shift the shared parameters:
  :math:`\beta^{(k)} = s^\beta_k \beta_{:c} + b^\beta_k`,
  :math:`\gamma^{(k)} = s^\gamma_k \gamma_{:c,:c} + b^\gamma_k`, initialised to
  :math:`s = 1, b = 0` so that it starts out equal to SlimGDN.

All parameters use CompressAI's non-negative reparametrisation, as its ``GDN`` does. It is
elementwise, so reparametrising the full-width tensors and slicing them gives the same values
as slicing first; inside :func:`reparametrised_once` (a multi-width training step) each layer
does it once for all widths instead of once per width.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from compressai.layers import GDN
from compressai.ops import LowerBound
from compressai.ops.parametrizers import NonNegativeParametrizer
from torch import Tensor, nn

from .slimmable import Slimmable, leading

__all__ = ["GDN_VARIANTS", "SlimGDN", "SlimGDNPlus", "SwitchGDN", "make_gdn",
           "reparametrised_once"]


def gdn(x: Tensor, beta: Tensor, gamma: Tensor, inverse: bool) -> Tensor:
    """GDN (or IGDN) of ``x`` (N, C, H, W) with ``beta`` (C,) and ``gamma`` (C, C)."""
    c = beta.shape[0]
    norm = F.conv2d(x * x, gamma.reshape(c, c, 1, 1), beta)
    return x * (torch.sqrt(norm) if inverse else torch.rsqrt(norm))


class SwitchGDN(Slimmable):
    """A private compressai :class:`~compressai.layers.GDN` for each width."""

    def __init__(self, widths: Sequence[int], inverse: bool = False) -> None:
        super().__init__(len(widths))
        self.widths = tuple(widths)
        self.inverse = inverse
        self.gdns = nn.ModuleList(GDN(c, inverse=inverse) for c in self.widths)

    def forward(self, x: Tensor) -> Tensor:
        return self.gdns[self.width_index](x)


class SlimGDN(Slimmable):
    """One full-width GDN whose :math:`\\beta, \\gamma` are sliced to the active width."""

    shared: tuple[Tensor, ...] | None = None  # full_parameters(), set by reparametrised_once

    def __init__(
        self,
        widths: Sequence[int],
        inverse: bool = False,
        beta_min: float = 1e-6,
        gamma_init: float = 0.1,
    ) -> None:
        super().__init__(len(widths))
        self.widths = tuple(widths)
        self.inverse = inverse
        full = max(self.widths)
        self.beta_reparam = NonNegativeParametrizer(minimum=beta_min)
        self.gamma_reparam = NonNegativeParametrizer()
        self.beta = nn.Parameter(self.beta_reparam.init(torch.ones(full)))
        self.gamma = nn.Parameter(self.gamma_reparam.init(gamma_init * torch.eye(full)))

    def full_parameters(self) -> tuple[Tensor, ...]:
        """The reparametrised full-width tensors that every width slices."""
        return self.beta_reparam(self.beta), self.gamma_reparam(self.gamma)

    def _full(self) -> tuple[Tensor, ...]:
        return self.full_parameters() if self.shared is None else self.shared

    def _sliced(self, full: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        c = self.widths[self.width_index]
        return leading(full[0], c), leading(full[1], c, c)

    def effective_parameters(self) -> tuple[Tensor, Tensor]:
        """The :math:`\\beta, \\gamma` used at the active width."""
        return self._sliced(self._full())

    def forward(self, x: Tensor) -> Tensor:
        beta, gamma = self.effective_parameters()
        return gdn(x, beta, gamma, self.inverse)


class SlimGDNPlus(SlimGDN):
    """SlimGDN+: SlimGDN with a learned non-negative scale and bias per width."""

    def __init__(
        self,
        widths: Sequence[int],
        inverse: bool = False,
        beta_min: float = 1e-6,
        gamma_init: float = 0.1,
    ) -> None:
        super().__init__(widths, inverse, beta_min, gamma_init)
        n = len(self.widths)
        # Scales and biases are >= 0 like gamma, so they share its reparametrisation.
        ones, zeros = torch.ones(n), torch.zeros(n)
        self.beta_scale = nn.Parameter(self.gamma_reparam.init(ones))
        self.beta_bias = nn.Parameter(self.gamma_reparam.init(zeros))
        self.gamma_scale = nn.Parameter(self.gamma_reparam.init(ones))
        self.gamma_bias = nn.Parameter(self.gamma_reparam.init(zeros))
        # A scale driven to 0 must not drive beta below beta_min (division by ~0).
        self.beta_bound = LowerBound(beta_min)

    def full_parameters(self) -> tuple[Tensor, ...]:
        nonneg = self.gamma_reparam
        return (*super().full_parameters(), nonneg(self.beta_scale), nonneg(self.beta_bias),
                nonneg(self.gamma_scale), nonneg(self.gamma_bias))

    def effective_parameters(self) -> tuple[Tensor, Tensor]:
        full = self._full()
        beta, gamma = self._sliced(full)
        k = self.width_index
        beta_scale, beta_bias, gamma_scale, gamma_bias = full[2:]
        beta = beta_scale[k] * beta + beta_bias[k]
        gamma = gamma_scale[k] * gamma + gamma_bias[k]
        return self.beta_bound(beta), gamma


@contextmanager
def reparametrised_once(module: nn.Module) -> Iterator[None]:
    """Within the block, every :class:`SlimGDN` (and SlimGDN+) in ``module`` uses full-width
    parameters reparametrised on entry, each width slicing them.

    A training step runs the model at every width before one backward pass; without this,
    each layer would rebuild its non-negative :math:`\\beta, \\gamma` (and SlimGDN+'s
    scalars) once per width, each operation a kernel launch on a GPU
    (``benchmarks/train_throughput.py`` counts a step's).
    The values are the same (the reparametrisation is elementwise); only the gradients'
    summation order changes. The parameters must not change inside the block (no optimiser
    step), which holds for a forward pass.
    """
    layers = [m for m in module.modules() if isinstance(m, SlimGDN)]
    for layer in layers:
        layer.shared = layer.full_parameters()
    try:
        yield
    finally:
        for layer in layers:
            layer.shared = None


GDN_VARIANTS: dict[str, type[Slimmable]] = {
    "switch": SwitchGDN,
    "slim": SlimGDN,
    "slim+": SlimGDNPlus,
}


def make_gdn(variant: str, widths: Sequence[int], inverse: bool = False) -> Slimmable:
    """Build the GDN variant named ``"switch"``, ``"slim"`` or ``"slim+"``."""
    try:
        cls = GDN_VARIANTS[variant]
    except KeyError:
        raise ValueError(
            f"unknown GDN variant {variant!r}; expected one of {sorted(GDN_VARIANTS)}"
        ) from None
    return cls(widths, inverse=inverse)
