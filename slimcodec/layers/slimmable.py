"""Slimmable convolutions: one full-width kernel, sliced to the active width.

After Yu et al., "Slimmable Neural Networks" (ICLR 2019), as used by Yang et al.,
"Slimmable Compressive Autoencoders for Practical Neural Image Compression" (CVPR 2021).
A layer built for widths ``(c_1 > c_2 > ...)`` holds the kernel of the widest one; at width
index ``k`` it uses the first ``in_widths[k]`` input and ``out_widths[k]`` output channels.

The active width is plain per-layer state (an ``int``), set by the owning model through
:meth:`Slimmable.set_width_index`. Nothing is global, and switching copies or allocates no
tensor: slicing a parameter gives a view.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .subpixel import subpixel_conv_transpose2d

__all__ = ["SlimConv2d", "SlimConvTranspose2d", "Slimmable", "leading"]


class Slimmable(nn.Module):
    """A module whose channel count follows a width index set by its owner."""

    def __init__(self, num_widths: int) -> None:
        super().__init__()
        if num_widths < 1:
            raise ValueError("a slimmable layer needs at least one width")
        self.num_widths = num_widths
        self.width_index = 0

    def set_width_index(self, index: int) -> None:
        if not 0 <= index < self.num_widths:
            raise IndexError(f"width index {index} out of range [0, {self.num_widths})")
        self.width_index = index


def leading(t: Tensor, *sizes: int) -> Tensor:
    """``t``'s first ``sizes[d]`` entries along each leading dimension ``d``: a view, and
    ``t`` itself where nothing is cut (a slice's backward pass builds a zero tensor of the
    full size to copy its gradient into, a waste at the widest width)."""
    for dim, size in enumerate(sizes):
        if t.shape[dim] != size:
            t = t.narrow(dim, 0, size)
    return t


def _as_widths(channels: int | Sequence[int], num_widths: int) -> tuple[int, ...]:
    """A fixed channel count (the image's 3) repeated, or one count per width."""
    if isinstance(channels, int):
        return (channels,) * num_widths
    widths = tuple(int(c) for c in channels)
    if len(widths) != num_widths:
        raise ValueError(f"expected {num_widths} channel counts, got {len(widths)}")
    return widths


class _SlimConvNd(Slimmable):
    transposed = False

    def __init__(
        self,
        in_widths: int | Sequence[int],
        out_widths: int | Sequence[int],
        kernel_size: int,
        stride: int = 1,
        bias: bool = True,
    ) -> None:
        n = max(len(w) if not isinstance(w, int) else 1 for w in (in_widths, out_widths))
        super().__init__(n)
        self.in_widths = _as_widths(in_widths, n)
        self.out_widths = _as_widths(out_widths, n)
        self.stride = stride
        self.padding = kernel_size // 2
        # Same layout and initialisation as nn.Conv2d / nn.ConvTranspose2d at full width.
        ref_cls = nn.ConvTranspose2d if self.transposed else nn.Conv2d
        ref = ref_cls(max(self.in_widths), max(self.out_widths), kernel_size, stride, bias=bias)
        self.weight = ref.weight
        self.bias = ref.bias

    @property
    def in_channels(self) -> int:
        return self.in_widths[self.width_index]

    @property
    def out_channels(self) -> int:
        return self.out_widths[self.width_index]

    def extra_repr(self) -> str:
        return (
            f"in_widths={self.in_widths}, out_widths={self.out_widths}, "
            f"kernel_size={self.weight.shape[-1]}, stride={self.stride}"
        )


class SlimConv2d(_SlimConvNd):
    """``Conv2d`` with "same" padding (``k // 2``) whose kernel is sliced to the width."""

    def forward(self, x: Tensor) -> Tensor:
        cin, cout = self.in_channels, self.out_channels
        bias = leading(self.bias, cout) if self.bias is not None else None
        return F.conv2d(x, leading(self.weight, cout, cin), bias, self.stride, self.padding)


class SlimConvTranspose2d(_SlimConvNd):
    """``ConvTranspose2d`` that upsamples exactly by ``stride`` (CompressAI's ``deconv``).

    The kernel layout of a transposed convolution is ``(in, out, kH, kW)``, so the slice is
    ``weight[:in, :out]``, the other way round from :class:`SlimConv2d`.
    """

    transposed = True

    def forward(self, x: Tensor) -> Tensor:
        cin, cout = self.in_channels, self.out_channels
        bias = leading(self.bias, cout) if self.bias is not None else None
        if self._subpixel(x, cin, cout):
            return subpixel_conv_transpose2d(x, leading(self.weight, cin, cout), bias,
                                             self.stride, self.padding)
        return F.conv_transpose2d(
            x,
            leading(self.weight, cin, cout),
            bias,
            self.stride,
            self.padding,
            output_padding=self.stride - 1,
        )

    def _subpixel(self, x: Tensor, cin: int, cout: int) -> bool:
        """Whether to compute this call as a convolution and a pixel shuffle
        (:mod:`.subpixel`): on a CPU, where PyTorch's transposed convolution is slow with
        few output channels (``cout·s² <= cin``: the synthesis's last layer). Not when
        traced (ONNX export, fvcore's MAC counts), which keep the layer as it is:
        onnxruntime's transposed convolution is the faster one, and MACs count the
        architecture's multiply-adds, not the zero taps of the convolution form."""
        return (x.device.type == "cpu" and cout * self.stride ** 2 <= cin
                and not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export())
