"""Images as the models take them: ``(1, 3, H, W)`` float tensors in [0, 1], padded to a
multiple of the model's downsampling."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["crop", "from_tensor", "pad_to_multiple", "to_tensor"]


def to_tensor(rgb: np.ndarray) -> Tensor:
    """``(H, W, 3)`` uint8 -> ``(1, 3, H, W)`` float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float().div_(255)


def from_tensor(x: Tensor) -> np.ndarray:
    """``(1, 3, H, W)`` in [0, 1] -> ``(H, W, 3)`` uint8, rounding to nearest."""
    return x[0].clamp(0, 1).mul(255).round_().to(torch.uint8).permute(1, 2, 0).numpy()


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Replicate-pad the bottom and right edges to a multiple of ``multiple``.

    Replicating the border (rather than zeros) keeps the padding cheap to code. The rows and
    columns are gathered, which is what ``F.pad(mode="replicate")`` computes: inductor
    (``slimcodec train --compile``) miscompiles the backward of that pad (torch 2.14).
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    rows = torch.arange(h + ph, device=x.device).clamp_(max=h - 1)
    cols = torch.arange(w + pw, device=x.device).clamp_(max=w - 1)
    return x.index_select(-2, rows).index_select(-1, cols)


def crop(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Undo :func:`pad_to_multiple`."""
    return x[..., : size[0], : size[1]]
