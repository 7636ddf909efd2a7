"""compressai's factorized entropy bottleneck, its forward free of host synchronisation."""

from __future__ import annotations

import torch
from compressai.entropy_models import EntropyBottleneck
from torch import Tensor


class SyncFreeEntropyBottleneck(EntropyBottleneck):
    """``EntropyBottleneck`` (Ballé et al., ICLR 2018, appendix 6.1) with the same weights,
    state dict, strings and arithmetic, whose :meth:`forward` never waits for the device.

    compressai builds the channel-first permutation as a tensor on ``x``'s device and
    unpacks it into ``permute``: on a GPU each of its elements is a device-to-host copy, so
    one call synchronises twelve times, and a training step (one call per width) stops the
    host sixty times. Here the permutation is a tuple of ints.

    Its likelihood, :math:`\\sigma(f(\\tilde y + \\tfrac12)) - \\sigma(f(\\tilde y - \\tfrac12))`
    with :math:`f` the density's cumulative logits, passes both bounds through :math:`f`'s
    layers as one tensor: half the operations (each a kernel launch on a GPU) for the same
    values up to the matrix products' rounding. The CDF tables that code files are built by
    compressai's ``update``, which this leaves alone.
    """

    def _likelihood(self, inputs: Tensor, stop_gradient: bool = False
                    ) -> tuple[Tensor, Tensor, Tensor]:
        n = inputs.shape[-1]
        logits = self._logits_cumulative(torch.cat((inputs - 0.5, inputs + 0.5), -1),
                                         stop_gradient=stop_gradient)
        cdf = torch.sigmoid(logits)
        return cdf[..., n:] - cdf[..., :n], logits[..., :n], logits[..., n:]

    def forward(self, x: Tensor, training: bool | None = None) -> tuple[Tensor, Tensor]:
        if training is None:
            training = self.training
        perm = (1, 0, *range(2, x.ndim))  # B x C x ... <-> C x B x ... (its own inverse)
        x = x.permute(*perm).contiguous()
        shape = x.size()
        values = x.reshape(x.size(0), 1, -1)
        outputs = self.quantize(values, "noise" if training else "dequantize",
                                self._get_medians())
        likelihood, _, _ = self._likelihood(outputs)
        if self.use_likelihood_bound:
            likelihood = self.likelihood_lower_bound(likelihood)
        outputs = outputs.reshape(shape).permute(*perm).contiguous()
        likelihood = likelihood.reshape(shape).permute(*perm).contiguous()
        return outputs, likelihood
