"""compressai's factorized entropy bottleneck, its forward free of host synchronisation."""

from __future__ import annotations

from compressai.entropy_models import EntropyBottleneck
from torch import Tensor


class SyncFreeEntropyBottleneck(EntropyBottleneck):
    """``EntropyBottleneck`` (Ballé et al., ICLR 2018, appendix 6.1) with the same weights,
    state dict, strings and arithmetic, whose :meth:`forward` never waits for the device.

    compressai builds the channel-first permutation as a tensor on ``x``'s device and
    unpacks it into ``permute``: on a GPU each of its elements is a device-to-host copy, so
    one call synchronises twelve times, and a training step (one call per width) stops the
    host sixty times. Here the permutation is a tuple of ints.
    """

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
