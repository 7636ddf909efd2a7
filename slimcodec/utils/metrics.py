"""Distortion metrics on 8-bit RGB images, as codec papers report them."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

__all__ = ["MEAN_PSNR_CEILING", "MS_SSIM_MIN_SIDE", "mean_psnr", "mean_squared_error",
           "ms_ssim", "psnr"]

# Five scales with an 11-tap window need the short side to exceed (11 - 1) * 2**4.
MS_SSIM_MIN_SIDE = 161

#: Rows per band of :func:`mean_squared_error`: a band of a 48 MP image's float64
#: differences is 50 MB, the whole image's 1.2 GB (and the square as much again).
BAND_ROWS = 256


def mean_squared_error(a: np.ndarray, b: np.ndarray) -> float:
    """The mean of :math:`(a - b)^2` over two images of one shape, in float64 a band of
    rows at a time, so that no whole-image copy is made. For 8-bit images every partial
    sum is an integer below :math:`2^{53}`, so the result is exactly ``np.mean``'s."""
    total = 0.0
    for top in range(0, a.shape[0], BAND_ROWS):
        d = (a[top : top + BAND_ROWS].astype(np.float64) - b[top : top + BAND_ROWS]).ravel()
        total += float(np.dot(d, d))
    return total / a.size


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 images (peak 255); ``inf`` when identical."""
    mse = mean_squared_error(a, b)
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


#: The most one image's PSNR counts for in a mean over images (:func:`mean_psnr`). A file
#: can decode an image exactly (screens' exact blocks, :mod:`slimcodec.index_map`), and its
#: PSNR is then infinite; past 60 dB (a mean squared error of 0.065: one value in 15 off
#: by one) the differences are invisible, and one image near lossless would rule the mean.
MEAN_PSNR_CEILING = 60.0


def mean_psnr(values: Iterable[float]) -> float:
    """The mean of PSNRs over images, each counted at most :data:`MEAN_PSNR_CEILING`: what
    ``slimcodec eval`` and the benchmarks' RD curves average."""
    capped = [min(float(v), MEAN_PSNR_CEILING) for v in values]
    if not capped:
        raise ValueError("no PSNR to average")
    return float(np.mean(capped))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM (Wang et al. 2003, five scales) between two uint8 ``(H, W, 3)`` images.

    ``None`` for images whose short side is under :data:`MS_SSIM_MIN_SIDE` pixels, where the
    five-scale pyramid is undefined.
    """
    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None
    import torch  # here, not above: psnr serves the torch-free edge runtime's rate control
    from pytorch_msssim import ms_ssim as _ms_ssim

    # (float64 copies: a decoded image may be a read-only view, which torch warns about)
    ta = torch.from_numpy(a.astype(np.float64)).permute(2, 0, 1)[None]
    tb = torch.from_numpy(b.astype(np.float64)).permute(2, 0, 1)[None]
    return float(_ms_ssim(ta, tb, data_range=255.0))
