r"""The joint rate-distortion loss over all widths of a slimmable model.

SlimCAE trains every width in every step, each with its own λ (CompressAI's convention):

.. math::

    L = \sum_w \lambda_w \cdot 255^2 \cdot \mathrm{MSE}_w + R_w, \qquad
    R_w = \frac{-\sum \log_2 p_w(\tilde y_w)}{N \cdot H \cdot W}\ \text{(bits per pixel)},

the sum running over every latent the model codes (:math:`\hat y`, and :math:`\hat z` for a
hyperprior). With one λ per image (``slimcodec train --lambda-per image``), each term is
image :math:`i`'s own, averaged over the batch:
:math:`L = \sum_w \frac1N \sum_i \lambda_{w,i} \cdot 255^2 \cdot \mathrm{MSE}_{w,i} + R_{w,i}`
(with equal λs, the same value as above).

The entropy models' auxiliary loss (their quantiles) is added to the returned total: it
only reaches the ``quantiles`` parameters, and the main loss never does, so one backward
gives both optimizers their usual gradients, and DistributedDataParallel sees one forward
per backward even though the model runs at every width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from slimcodec.layers import reparametrised_once
from slimcodec.models import ModulatedSlimCAE, SlimCAE

__all__ = ["MultiWidthRDLoss"]


class MultiWidthRDLoss(nn.Module):
    """Runs ``model`` at each width; returns the total loss and per-width bpp and MSE."""

    def __init__(self, model: SlimCAE, lambdas: Sequence[float]) -> None:
        super().__init__()
        if len(lambdas) != len(model.widths):
            raise ValueError(f"need one λ per width {model.widths}, got {list(lambdas)}")
        self.model = model
        self.lambdas = [float(v) for v in lambdas]

    def forward(self, x: Tensor, lambdas: Tensor | None = None) -> dict[str, Tensor]:
        """``lambdas`` ``(W, N)``: each image's λ at each width (a variable-rate model with
        one entropy model per width); None: ``self.lambdas``, one per width."""
        n, _, h, w = x.shape
        total = x.new_zeros(())
        bpps, mses = [], []
        per_image = lambdas is not None
        # Every width slices its GDNs' parameters reparametrised once for the step.
        with reparametrised_once(self.model):
            for i, width in enumerate(self.model.widths):
                self.model.set_width(width)
                if per_image:
                    lmbda = lambdas[i]
                    out = self.model(x, lmbda)
                else:
                    lmbda = self.lambdas[i]
                    if isinstance(self.model, ModulatedSlimCAE):  # the modulation and entropy
                        self.model.set_lambda(lmbda)              # model follow this width's λ
                    out = self.model(x)
                # Bits and squared errors per image, in float32 whatever the transforms ran in.
                bits = sum(-torch.log(v.float()).flatten(1).sum(1)
                           for v in out["likelihoods"].values())
                bpp = bits / (math.log(2) * h * w)
                if out["x_hat"] is None:  # a rate-only stage (the entropy model alone trains)
                    mse = x.new_full((n,), math.nan)
                    total = total + bpp.mean()
                else:
                    mse = (out["x_hat"].float() - x).square().flatten(1).mean(1)
                    total = total + (lmbda * 255**2 * mse + bpp).mean()
                bpps.append(bpp.detach().mean())
                mses.append(mse.detach().mean())
        self.model.set_width(self.model.widths[0])
        aux = self.model.aux_loss()
        return {"loss": total + aux, "rd_loss": total.detach(), "aux_loss": aux.detach(),
                "bpp": torch.stack(bpps), "mse": torch.stack(mses)}
