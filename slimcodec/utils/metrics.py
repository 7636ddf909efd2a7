"""Distortion metrics on 8-bit RGB images, as codec papers report them."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["MS_SSIM_MIN_SIDE", "ms_ssim", "psnr"]

# Five scales with an 11-tap window need the short side to exceed (11 - 1) * 2**4.
MS_SSIM_MIN_SIDE = 161


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 images (peak 255); ``inf`` when identical."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM (Wang et al. 2003, five scales) between two uint8 ``(H, W, 3)`` images.

    ``None`` for images whose short side is under :data:`MS_SSIM_MIN_SIDE` pixels, where the
    five-scale pyramid is undefined.
    """
    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None
    import torch  # here, not above: psnr serves the torch-free edge runtime's rate control
    from pytorch_msssim import ms_ssim as _ms_ssim

    ta = torch.from_numpy(a).permute(2, 0, 1)[None].double()
    tb = torch.from_numpy(b).permute(2, 0, 1)[None].double()
    return float(_ms_ssim(ta, tb, data_range=255.0))
