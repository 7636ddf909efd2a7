"""Test helpers shared by several test modules."""

import numpy as np

SMALL_WIDTHS = (16, 12, 8)


def natural_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth image with some texture: gradients, a disc and mild noise (uint8 HxWx3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
    g = 255 * xx / max(w - 1, 1)
    b = np.where((xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (min(h, w) / 3) ** 2, 220, 40)
    img = np.stack([r, g, b], -1) + rng.normal(0, 6, (h, w, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)
