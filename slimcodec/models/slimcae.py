r"""SlimCAE: the slimmable compressive autoencoder.

Yang, Herranz, Cheng, Mozerov, "Slimmable Compressive Autoencoders for Practical Neural
Image Compression", CVPR 2021 (https://arxiv.org/abs/2103.15726).

The architecture is that of the paper's code (itself Ballé et al.'s 2017 factorized-prior
model, with a GDN after every encoder layer), every hidden layer slimmed:

.. code-block:: none

    g_a: conv 9x9/4 -> GDN -> conv 5x5/2 -> GDN -> conv 5x5/2 -> GDN       (3 -> w -> w -> w)
    g_s: IGDN -> deconv 5x5/2 -> IGDN -> deconv 5x5/2 -> IGDN -> deconv 9x9/4  (w -> w -> w -> 3)

At width :math:`w` every layer uses its first :math:`w` channels, and the latent
:math:`y \in \mathbb{R}^{w \times H/16 \times W/16}` is coded with that width's own factorized
entropy model :math:`p_w(\hat y)` (one compressai ``EntropyBottleneck`` per width). Training
minimises :math:`\sum_w \lambda_w \cdot 255^2 \cdot \mathrm{MSE}_w + R_w`.

Training relaxes quantisation with uniform noise, :math:`\tilde y = y + u`, for the rate. The
synthesis transform may instead see the latent rounded as at test time,
:math:`\hat y = \lfloor y - \mu \rceil + \mu` with a straight-through gradient (``ste_decoder``;
Minnen & Singh, "Channel-wise autoregressive entropy models for learned image compression",
ICIP 2020), so that the decoder learns the inputs it will be given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from compressai.entropy_models import EntropyBottleneck
from compressai.models import CompressionModel
from compressai.models.utils import update_registered_buffers
from compressai.ops import quantize_ste
from torch import Tensor, nn

from slimcodec.bitstream import rans
from slimcodec.layers import (
    SlimConv2d,
    SlimConvTranspose2d,
    Slimmable,
    SyncFreeEntropyBottleneck,
    make_gdn,
)

__all__ = ["DEFAULT_WIDTHS", "SlimCAE"]

DEFAULT_WIDTHS = (192, 144, 96, 72, 48)


def float32_entropy(like: Tensor) -> torch.autocast:
    """A block that runs in float32 even inside a bf16 autocast (``slimcodec train
    --precision bf16``): rates need more than bf16's 8 significant bits."""
    return torch.autocast(like.device.type, enabled=False)


def quantised_tables(entropy_model: nn.Module) -> rans.EntropyTables:
    """A compressai entropy model's quantised CDFs (built by its ``update``) as the coder
    takes them."""
    if entropy_model._quantized_cdf.numel() == 0:
        raise RuntimeError("CDF tables not built: call model.update() first")
    return rans.EntropyTables(entropy_model._quantized_cdf.cpu().numpy(),
                              entropy_model._cdf_length.cpu().numpy(),
                              entropy_model._offset.cpu().numpy())


class SlimCAE(CompressionModel):
    """Slimmable factorized-prior autoencoder with one entropy model per width.

    Args:
        widths: channel counts the model can run at, widest first (the widest is the size of
            the shared weights).
        gdn: GDN variant, ``"switch"``, ``"slim"`` or ``"slim+"`` (see :mod:`slimcodec.layers.gdn`).

    Inputs to :meth:`forward` and :meth:`compress` must have a height and width divisible by
    :attr:`downsampling` (16); :mod:`slimcodec.codec` pads arbitrary images.
    """

    downsampling = 16
    #: Training only: feed ``g_s`` the rounded latent with a straight-through gradient (see
    #: the module docstring) instead of the noisy one. Set by the trainer; not part of the
    #: architecture, so not in :attr:`config`.
    ste_decoder: bool = False
    #: What ``slimcodec train --stage encoder`` trains (parameter name prefixes): the
    #: encoder's side alone, so that the decoder, and what it makes of every file, stays.
    ENCODER_PARAMETERS: tuple[str, ...] = ("g_a.",)
    #: What ``slimcodec train --stage decoder`` trains: the synthesis side alone, so that
    #: every string the model writes stays bit for bit and only what it makes of it moves.
    DECODER_PARAMETERS: tuple[str, ...] = ("g_s.",)

    def __init__(self, widths: Sequence[int] = DEFAULT_WIDTHS, gdn: str = "slim+") -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if not widths or any(w <= 0 for w in widths) or len(set(widths)) != len(widths):
            raise ValueError(f"widths must be distinct positive integers, got {widths}")
        self.widths = tuple(sorted(widths, reverse=True))
        self.gdn = gdn
        w = self.widths
        self.g_a = nn.Sequential(
            SlimConv2d(3, w, 9, stride=4),
            make_gdn(gdn, w),
            SlimConv2d(w, w, 5, stride=2),
            make_gdn(gdn, w),
            SlimConv2d(w, w, 5, stride=2, bias=False),
            make_gdn(gdn, w),
        )
        self.g_s = nn.Sequential(
            make_gdn(gdn, w, inverse=True),
            SlimConvTranspose2d(w, w, 5, stride=2),
            make_gdn(gdn, w, inverse=True),
            SlimConvTranspose2d(w, w, 5, stride=2),
            make_gdn(gdn, w, inverse=True),
            SlimConvTranspose2d(w, 3, 9, stride=4),
        )
        self.entropy_bottlenecks = nn.ModuleList(SyncFreeEntropyBottleneck(c) for c in w)
        # Collected once so that switching width is a loop over ints, nothing more.
        self._slimmable: tuple[Slimmable, ...] = tuple(
            m for m in self.modules() if isinstance(m, Slimmable)
        )
        self._width_index = 0
        self._adapter = None

    # -- width switching ------------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments, enough to rebuild the model (stored in checkpoints)."""
        return {"widths": list(self.widths), "gdn": self.gdn}

    @property
    def width(self) -> int:
        """The active width (channels)."""
        return self.widths[self._width_index]

    def set_width(self, width: int) -> None:
        """Make every slimmable layer (and the entropy model) run at ``width`` channels."""
        try:
            index = self.widths.index(int(width))
        except ValueError:
            raise ValueError(
                f"width {width} is not one of this model's widths {list(self.widths)}"
            ) from None
        for layer in self._slimmable:
            layer.set_width_index(index)
        if self._adapter is not None:
            self._adapter.set_width_index(index)
        self._width_index = index

    @contextmanager
    def using_width(self, width: int) -> Iterator[SlimCAE]:
        """Run at ``width`` inside the block, then restore the previous width."""
        previous = self.width
        self.set_width(width)
        try:
            yield self
        finally:
            self.set_width(previous)

    @property
    def entropy_bottleneck(self) -> EntropyBottleneck:
        """The entropy model of the active width (a domain adapter's own, if it has one)."""
        own = self._adapter.entropy_bottleneck(self) if self._adapter else None
        return own if own is not None else self._source_bottleneck()

    def _source_bottleneck(self) -> EntropyBottleneck:
        return self.entropy_bottlenecks[self._width_index]

    # -- domain adapters ------------------------------------------------------------------

    @property
    def adapter(self) -> Any:
        """The active domain adapter (:mod:`slimcodec.adaptation`), or None: the source codec."""
        return self._adapter

    def set_adapter(self, adapter: Any) -> None:
        """Run with ``adapter``'s extra parameters (None: the source codec alone).

        Like the width, this is explicit per-model state. The adapter is held by reference,
        not registered as a submodule: the model's parameters, state dict and fingerprint
        stay the source's. It runs in the model's mode (training or eval), as a submodule
        would.
        """
        if adapter is not None:  # its source was checked when it was made or loaded
            adapter.set_width_index(self._width_index)
            adapter.train(self.training)
        object.__setattr__(self, "_adapter", adapter)

    def train(self, mode: bool = True) -> SlimCAE:
        """As :meth:`torch.nn.Module.train`, and the active adapter with it: not being a
        submodule, it would otherwise keep its own mode, and an adapter's entropy models in
        eval mode round without a gradient while the rest of the model trains."""
        super().train(mode)
        adapter = getattr(self, "_adapter", None)  # train() may run before __init__ sets it
        if adapter is not None:
            adapter.train(mode)
        return self

    @contextmanager
    def using_adapter(self, adapter: Any) -> Iterator[SlimCAE]:
        previous = self._adapter
        self.set_adapter(adapter)
        try:
            yield self
        finally:  # through set_adapter: the width may have changed inside the block
            self.set_adapter(previous)

    # -- transforms (subclasses that condition them override these) -----------------------

    def analysis(self, x: Tensor) -> Tensor:
        """:math:`y = g_a(x)` at the active width (with the active adapter's stages)."""
        if self._adapter is None:
            return self.g_a(x)
        for stage in range(3):
            x = self.g_a[2 * stage + 1](self.g_a[2 * stage](x))
            x = self._adapter.encoder_stage(stage, x)
        return x

    def synthesis(self, y_hat: Tensor) -> Tensor:
        """:math:`\\hat x = g_s(\\hat y)` at the active width (unclamped)."""
        if self._adapter is None:
            return self.g_s(y_hat)
        x = y_hat
        for stage in range(3):
            x = self.g_s[2 * stage + 1](self.g_s[2 * stage](x))
            x = self._adapter.decoder_stage(stage, x)
        return x

    # -- CompressionModel API -------------------------------------------------------------

    def forward(self, x: Tensor) -> dict[str, Any]:
        """Relaxed (training) or quantised (eval mode) pass at the active width.

        Returns ``{"x_hat": ..., "likelihoods": {"y": ...}}`` as compressai models do; in
        eval mode :math:`\\hat y` is exactly what :meth:`compress` entropy-codes.
        """
        return self._coded(self.analysis(x), self.synthesis)

    def _coded(self, y: Tensor, synthesis: Callable[[Tensor], Tensor]) -> dict[str, Any]:
        """The latent ``y`` through the factorized density and ``synthesis`` (the rest of
        :meth:`forward`, shared with the λ-conditioned subclass)."""
        with float32_entropy(y):
            y = y.float()
            y_hat, y_likelihoods = self.entropy_bottleneck(y)
        if self.training and self.ste_decoder:
            medians = self.entropy_bottleneck._get_medians()
            y_hat = quantize_ste(y - medians) + medians
        return {"x_hat": synthesis(y_hat), "likelihoods": {"y": y_likelihoods}}

    def compress(self, x: Tensor) -> dict[str, Any]:
        """Entropy-code a batch: one string per image, in CompressAI's rANS format."""
        symbols = self.quantize_latent(self.analysis(x))
        tables = self.entropy_tables()
        strings = [rans.encode(s.numpy(), tables) for s in symbols.cpu()]
        return {"strings": [strings], "shape": tuple(symbols.shape[-2:])}

    def decompress(self, strings: list[list[bytes]], shape: Sequence[int]) -> dict[str, Tensor]:
        """Inverse of :meth:`compress`; a corrupt string raises ``CorruptBitstreamError``."""
        tables = self.entropy_tables()
        latent = (tables.channels, *(int(s) for s in shape))
        symbols = np.stack([rans.decode(s, tables, latent) for s in strings[0]])
        x_hat = self.synthesis(self.dequantize_latent(torch.from_numpy(symbols))).clamp_(0, 1)
        return {"x_hat": x_hat}

    # -- entropy coding: what the codec and the exporter use --------------------------------

    #: How the latent is coded (:mod:`slimcodec.latent`); a bundle's manifest records it.
    latent_kind = "factorized"

    def latent_coder(self) -> Any:
        """How the active width (and adapter) codes its latent: a
        :class:`slimcodec.latent.FactorizedCoder` (one string, one density per channel)."""
        from slimcodec.latent import FactorizedCoder

        medians = self.entropy_bottleneck._get_medians().detach().reshape(-1).cpu().numpy()
        return FactorizedCoder(medians, self.entropy_tables())

    def coder_networks(self, side: str | None = None) -> dict[str, nn.Module]:
        """The networks :meth:`latent_coder` runs, by name, in coding order (each takes the
        output of the one before, the first the latent), for the exporter and the profiler;
        ``side``: only those the ``"encoder"`` or the ``"decoder"`` runs. None here."""
        return {}

    def coder_integer_macs(self, latent_size: tuple[int, int]) -> int:
        """Multiply-adds the latent coder runs in integer arithmetic (both sides), for a
        latent of ``latent_size``: none here."""
        return 0

    def quantize_latent(self, y: Tensor) -> Tensor:
        """:math:`\\lfloor y - \\mu \\rceil` as int32 symbols, at the active width's medians."""
        return torch.round(y - self.entropy_bottleneck._get_medians()).int()

    def dequantize_latent(self, symbols: Tensor) -> Tensor:
        """:math:`\\hat y = s + \\mu`."""
        return symbols.float() + self.entropy_bottleneck._get_medians()

    def entropy_tables(self) -> rans.EntropyTables:
        """The quantised CDFs of the active entropy model (built by :meth:`update`)."""
        return quantised_tables(self.entropy_bottleneck)

    def load_state_dict(self, state_dict: dict[str, Tensor], strict: bool = True) -> Any:
        """As :meth:`nn.Module.load_state_dict`, the CDF buffers resized to the saved ones.

        compressai's own version also renames keys of its pre-1.2 files, and its prefix test
        takes ``entropy_bottlenecks.1`` for the prefix of ``entropy_bottlenecks.10``: with ten
        or more entropy models it fails, so the buffers are resized here instead.
        """
        for name, module in self.named_modules():
            if isinstance(module, EntropyBottleneck) and f"{name}._quantized_cdf" in state_dict:
                update_registered_buffers(module, name, ["_quantized_cdf", "_offset",
                                                         "_cdf_length"], state_dict, "resize")
        return nn.Module.load_state_dict(self, state_dict, strict=strict)

    def latent_shape(self, height: int, width: int) -> tuple[int, int]:
        """Latent size for an input of ``height x width`` (both multiples of 16)."""
        if height % self.downsampling or width % self.downsampling:
            raise ValueError(f"input size {height}x{width} is not a multiple of 16")
        return height // self.downsampling, width // self.downsampling

