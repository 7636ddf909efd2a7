"""How a decoder derives its entropy model from a variable-rate file's λ: part of the format.

A variable-rate model has ``K`` entropy models per width at log-spaced anchor λs over its
bounds ``[lo, hi]``; a file's f32 λ selects the nearest anchor in log scale. Encoder and
decoder, in PyTorch or in the edge runtime, call this one function, in float64, so that they
always pick the same table.

What λ weighs is also fixed here, for every encoder that chooses between files by it (the
gate between domain adapters, latent refinement, the palette): :func:`rd_loss`, CompressAI's
convention, and per pixel of the image where a file codes it upsampled (:func:`per_image_pixel`).
"""

from __future__ import annotations

import math

import numpy as np

from slimcodec.utils.metrics import mean_squared_error

__all__ = ["anchor_index", "normalized_log_lambda", "per_image_pixel", "rd_loss"]


def rd_loss(original: np.ndarray, decoded: np.ndarray, nbytes: int, lmbda: float) -> float:
    """λ·255²·MSE + bpp of a file of ``nbytes`` that decodes ``original`` (H, W, 3 uint8)
    to ``decoded``: the loss the codecs are trained on, measured on real bytes and pixels."""
    mse = mean_squared_error(decoded, original) / 255**2
    return lmbda * 255**2 * mse + 8 * nbytes / (original.shape[0] * original.shape[1])


def per_image_pixel(weight: float, image_size: tuple[int, int],
                    coded: tuple[int, int] | None) -> float:
    """The RD weight that a file coded at the size ``coded`` (None: the image's own) at the
    λ ``weight`` trades by per pixel of the image (``image_size``): ``weight`` times the
    coded pixels per image pixel, ``scale²`` (:func:`~slimcodec.scaling.coding_lambda`).
    The gate weighs a file's candidates by it, so that its losses at two scales compare,
    and the palette a file's."""
    if coded is None:
        return weight
    return weight * coded[0] * coded[1] / (image_size[0] * image_size[1])


def normalized_log_lambda(lmbda: float, bounds: tuple[float, float]) -> float:
    """λ's position in ``bounds`` in log scale: 0 at the low bound, 1 at the high."""
    lo, hi = bounds
    return 0.0 if hi == lo else (math.log(lmbda) - math.log(lo)) / math.log(hi / lo)


def anchor_index(lmbda: float, bounds: tuple[float, float], anchors: int) -> int:
    """The anchor nearest ``lmbda`` in log scale (ties to even, as Python's ``round``)."""
    t = normalized_log_lambda(lmbda, bounds)
    return min(max(round(t * (anchors - 1)), 0), anchors - 1)
