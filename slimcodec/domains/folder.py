"""Writing a generator's images to a folder, one PNG per seed (shared by the generators)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["write_rendered"]


def write_rendered(out: str | os.PathLike, prefix: str, count: int, seed: int,
                   render: Callable[[int], np.ndarray]) -> list[Path]:
    """Write ``render(i)`` for ``i`` in ``seed .. seed + count - 1`` as ``<prefix>-<i>.png``
    (five digits) into ``out``, created if need be; the paths written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(seed, seed + count):
        path = out / f"{prefix}-{i:05d}.png"
        Image.fromarray(render(i)).save(path)
        paths.append(path)
    return paths
