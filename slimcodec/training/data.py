"""Training patches: random crops and flips from any folder of images.

Batches are drawn from an explicit ``torch.Generator``, seeded by the trainer from
``(seed, step, rank)``: a run resumed at step ``t`` sees exactly the batches an uninterrupted
run would, and each distributed rank sees its own shard of the random stream.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch
from torch import Tensor

from slimcodec.errors import ImageError
from slimcodec.utils.image import find_images, load_rgb

__all__ = ["PatchSampler"]


class PatchSampler:
    """Decoded images held in memory (uint8), cut into random ``patch x patch`` crops.

    Unreadable files are skipped with a warning. Images smaller than the patch are
    replicate-padded up to it. ``limit``: the first N readable images (sorted by path) only.
    """

    def __init__(self, root: str | os.PathLike, patch: int, limit: int | None = None) -> None:
        self.patch = patch
        self.paths: list[str] = []
        self.images: list[np.ndarray] = []
        for path in find_images(root):
            if limit is not None and len(self.images) >= limit:
                break
            try:
                rgb, _ = load_rgb(path)
            except ImageError as exc:
                warnings.warn(f"skipping {exc}", stacklevel=2)
                continue
            h, w = rgb.shape[:2]
            if h < patch or w < patch:
                rgb = np.pad(rgb, ((0, max(0, patch - h)), (0, max(0, patch - w)), (0, 0)),
                             mode="edge")
            self.paths.append(str(path))
            self.images.append(rgb)
        if not self.images:
            raise ImageError(f"{root}: no readable training images")

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, batch: int, generator: torch.Generator) -> Tensor:
        """A ``(batch, 3, patch, patch)`` float batch in [0, 1]."""
        p = self.patch
        out = torch.empty(batch, 3, p, p)
        for i in range(batch):
            k = int(torch.randint(len(self.images), (1,), generator=generator))
            img = self.images[k]
            top = int(torch.randint(img.shape[0] - p + 1, (1,), generator=generator))
            left = int(torch.randint(img.shape[1] - p + 1, (1,), generator=generator))
            crop = torch.from_numpy(img[top : top + p, left : left + p]).permute(2, 0, 1)
            if torch.rand(1, generator=generator) < 0.5:
                crop = crop.flip(-1)
            if torch.rand(1, generator=generator) < 0.5:
                crop = crop.flip(-2)
            out[i] = crop.float().div_(255)
        return out
