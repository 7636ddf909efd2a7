r"""A transposed convolution computed as a convolution and a pixel shuffle (sub-pixel).

A transposed convolution of stride :math:`s`, kernel :math:`k` and padding :math:`p`
(output padding :math:`s - 1`, odd :math:`k` and :math:`p = \lfloor k/2 \rfloor`, so that it
upsamples exactly by :math:`s`) writes output
position :math:`o = s q + r` (phase :math:`r \in [0, s)`) as

.. math:: \hat x[s q + r] = \sum_e x[q + e]\, w[r + p - s e],

over the input offsets :math:`e` whose tap :math:`r + p - s e` lies in :math:`[0, k)`. For
each phase that is an ordinary convolution of :math:`x` at the input's resolution, so the
layer is one convolution with :math:`s^2` times the output channels, its kernel the taps of
every phase (zero where a phase has no tap), followed by a pixel shuffle that interleaves
the phases (Shi et al., "Real-Time Single Image and Video Super-Resolution Using an
Efficient Sub-Pixel Convolutional Neural Network", CVPR 2016). The sums are the same, in
another order, so the two differ by float rounding only.

Why: on a CPU, PyTorch's transposed convolution with few output channels (the synthesis's
last layer, 192 -> 3 at stride 4) runs at a fraction of its usual speed, while the
convolution form is a plain matrix product with :math:`3 s^2 = 48` outputs
(``benchmarks/coding_speed.py`` measures what it buys).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["offsets", "subpixel_conv_transpose2d", "subpixel_weight"]


def offsets(kernel_size: int, stride: int, padding: int) -> tuple[int, int]:
    """The first and last input offset :math:`e` that some phase takes a tap from."""
    return -((kernel_size - 1 - padding) // stride), (padding + stride - 1) // stride


def subpixel_weight(weight: Tensor, stride: int, padding: int) -> Tensor:
    """The ``(out·s², in, m, m)`` convolution kernel of a transposed convolution's
    ``(in, out, k, k)`` one; output channel ``c·s² + r_y·s + r_x`` is channel ``c`` at
    phase ``(r_y, r_x)``, as :func:`torch.nn.functional.pixel_shuffle` reads them.

    Built from views and one copy (no index tensor, no loop), so that it costs no more
    than a slice and its gradient flows back to ``weight``.
    """
    cin, cout, k, _ = weight.shape
    if 2 * padding != k - 1:
        raise ValueError(f"a sub-pixel kernel needs an odd kernel and padding k // 2 "
                         f"(an output of exactly stride x the input), got k={k}, "
                         f"padding={padding}")
    s = stride
    lo, hi = offsets(k, s, padding)
    m = hi - lo + 1
    # In the flipped kernel, the tap of phase r at offset lo + u is at
    # start + s·u + (s - 1 - r): a run of s·m taps, which pads and a reshape lay out.
    start = k - 1 - padding + s * lo - (s - 1)
    front, back = max(0, -start), max(0, start + s * m - k)
    w = F.pad(weight.flip(2, 3), (front, back, front, back))
    w = w.narrow(2, start + front, s * m).narrow(3, start + front, s * m)
    w = w.reshape(cin, cout, m, s, m, s).flip(3, 5)  # (in, out, u_y, r_y, u_x, r_x)
    return w.permute(1, 3, 5, 0, 2, 4).reshape(cout * s * s, cin, m, m)


def subpixel_conv_transpose2d(x: Tensor, weight: Tensor, bias: Tensor | None, stride: int,
                              padding: int) -> Tensor:
    """``F.conv_transpose2d(x, weight, bias, stride, padding, output_padding=stride - 1)``,
    computed as a convolution and a pixel shuffle."""
    lo, hi = offsets(weight.shape[-1], stride, padding)
    if -lo != hi:
        x = F.pad(x, (-lo, hi, -lo, hi))
    cout = weight.shape[1]
    b = None if bias is None else bias[:, None].expand(cout, stride * stride).reshape(-1)
    y = F.conv2d(x, subpixel_weight(weight, stride, padding), b,
                 padding=hi if -lo == hi else 0)
    return F.pixel_shuffle(y, stride)
