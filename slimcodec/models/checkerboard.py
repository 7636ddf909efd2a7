r"""SlimCAE-HPC: the slimmable hyperprior model with a checkerboard context on the means.

The latent's positions split like a checkerboard (He et al., "Checkerboard Context Model
for Efficient Learned Image Compression", CVPR 2021): the *anchors*, :math:`i + j` even,
are coded as in :class:`~slimcodec.models.HyperpriorSlimCAE`; every other element's mean
is corrected from the decoded anchors around it,

.. math::

    \mu'_i = \mu_i + c_i\big(\hat y_A \oplus \mu\big), \qquad
    \hat y_i = \lfloor y_i - \mu'_i \rceil + \mu'_i \quad (i \notin A),

where :math:`\hat y_A \oplus \mu` is the latent with the anchors' decoded values and the
hyperprior's means elsewhere, and :math:`c` a small slimmable network (conv 5x5 -> LReLU
-> conv 1x1 -> LReLU -> conv 1x1, ``w -> w -> w -> w`` at width ``w``) whose last layer
starts at zero, so an untrained context is the hyperprior itself.

Unlike He et al., the context moves the **means only**: the scales stay the hyperprior's,
computed from :math:`\hat z` by the integer network (:mod:`slimcodec.integer_scales`). So
the entropy decoder needs no context at all (every symbol is decoded in one pass with
the same table indexes as before, bit-identically in every runtime) and the context is a
float network run after it, like :math:`h_\mu`: a runtime whose context differs by a
rounding error moves a reconstruction by that much, it cannot desynchronise the coder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from slimcodec.latent import CONTEXT_HALO
from slimcodec.layers import SlimConv2d, Slimmable

from .hyperprior import HyperpriorSlimCAE, numpy_network

__all__ = ["CheckerboardSlimCAE", "MeanContext", "anchor_mask"]


def anchor_mask(size: tuple[int, int], device: torch.device | None = None) -> Tensor:
    """``(h, w)`` bool: True at the anchors, coded without context
    (:func:`slimcodec.latent.anchors`, as a tensor).

    Built on ``device`` itself: a mask copied from the host would make every training
    step on a GPU wait for the copy."""
    h, w = size
    return (torch.arange(h, device=device)[:, None] + torch.arange(w, device=device)) % 2 == 0


class MeanContext(nn.Module):
    r""":math:`c`: the latent with the anchors decoded and the hyper means elsewhere -> a
    correction of every mean (the model applies it to the non-anchors only). Its layers are
    slimmable; the model sets their width as it sets every other slimmable layer's."""

    def __init__(self, widths: Sequence[int], kernel: int = 5) -> None:
        super().__init__()
        w = tuple(widths)
        self.layers = nn.Sequential(SlimConv2d(w, w, kernel), nn.LeakyReLU(),
                                    SlimConv2d(w, w, 1), nn.LeakyReLU(),
                                    SlimConv2d(w, w, 1))
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class CheckerboardSlimCAE(HyperpriorSlimCAE):
    """:class:`~slimcodec.models.HyperpriorSlimCAE` with a checkerboard mean context.

    Args:
        context_kernel: the context's first convolution's size (5: each non-anchor sees
            the 12 anchors within two positions; at most 7).
        others: as :class:`~slimcodec.models.HyperpriorSlimCAE`.
    """

    latent_kind = "checkerboard"
    #: What ``--stage context`` trains: the context alone, around a trained hyperprior.
    CONTEXT_PARAMETERS = ("mean_context.",)
    ENTROPY_PARAMETERS = (*HyperpriorSlimCAE.ENTROPY_PARAMETERS, *CONTEXT_PARAMETERS)

    def __init__(self, *args: Any, context_kernel: int = 5, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if context_kernel < 1 or context_kernel % 2 == 0 or context_kernel > 2 * CONTEXT_HALO + 1:
            raise ValueError(f"context_kernel {context_kernel} must be odd, from 1 to "
                             f"{2 * CONTEXT_HALO + 1} (the coder runs it on bands of rows "
                             f"with {CONTEXT_HALO} rows around them)")
        self.context_kernel = int(context_kernel)
        self.mean_context = MeanContext(self.widths, self.context_kernel)
        self._slimmable = tuple(m for m in self.modules() if isinstance(m, Slimmable))

    @property
    def config(self) -> dict[str, Any]:
        return {**super().config, "context_kernel": self.context_kernel}

    def latent_means(self, means: Tensor, relax: Callable[[Tensor], Tensor]
                     ) -> tuple[Tensor, Tensor]:
        r"""The anchors relaxed around the hyper means, then the others around their
        context means: :math:`(\tilde y, \mu')`."""
        anchors = anchor_mask(tuple(means.shape[-2:]), means.device)
        y_anchors = relax(means)
        corrected = torch.where(anchors, means,
                                means + self.mean_context(torch.where(anchors, y_anchors,
                                                                      means)))
        return torch.where(anchors, y_anchors, relax(corrected)), corrected

    def coder_networks(self, side: str | None = None) -> dict[str, nn.Module]:
        """:meth:`HyperpriorSlimCAE.coder_networks` and the context, which both sides run."""
        return {**super().coder_networks(side), "mean_context": self.mean_context}

    def latent_coder(self) -> Any:
        """How the active width codes its latent (:class:`slimcodec.latent.CheckerboardCoder`)."""
        from slimcodec.latent import CheckerboardCoder

        return CheckerboardCoder.around(super().latent_coder(),
                                        numpy_network(self.mean_context))
