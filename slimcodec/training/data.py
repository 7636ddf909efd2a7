"""Training patches: random crops and flips from any folder of images, or from a mix of
sources drawn with stated proportions (``slimcodec train --mix``).

Batches are drawn from an explicit ``torch.Generator``, seeded by the trainer from
``(seed, step, rank)``: a run resumed at step ``t`` sees exactly the batches an uninterrupted
run would, and each distributed rank sees its own shard of the random stream.

:class:`PatchSampler` and :class:`MixedSampler` cut crops one by one on the host, which a
GPU outruns by far; :class:`DeviceCrops` holds the same images on the training device and
cuts a whole batch there in one gather (``slimcodec train --crops device``).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch
from torch import Tensor

from slimcodec.domains import RENDERERS
from slimcodec.errors import ImageError
from slimcodec.utils.image import find_images, load_rgb

__all__ = ["MIX_RENDERED", "MIX_SEED", "DeviceCrops", "MixedSampler", "PatchSampler",
           "parse_mix"]

#: Images rendered in memory for a generated source of the mix (``--mix screen=0.2``), and
#: the seed of the first: the benchmarks' held-out screens and illustrations use seeds below
#: 10,000, so that no image a model is measured on was rendered for its training.
MIX_RENDERED = 96
MIX_SEED = 100_000


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
            self.paths.append(str(path))
            self.images.append(_fit(rgb, patch))
        if not self.images:
            raise ImageError(f"{root}: no readable training images")

    @classmethod
    def rendered(cls, domain: str, patch: int, count: int = MIX_RENDERED,
                 seed: int = MIX_SEED) -> PatchSampler:
        """``count`` images of a generated domain (``screen``, ``screen-subpixel``,
        ``illustration``), rendered in memory from seeds ``seed ..``: the same images on
        every run and resume."""
        sampler = cls.__new__(cls)
        sampler.patch = patch
        sampler.paths = [f"{domain}:{i}" for i in range(seed, seed + count)]
        sampler.images = [_fit(np.array(RENDERERS[domain](i)), patch)
                          for i in range(seed, seed + count)]
        return sampler

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, batch: int, generator: torch.Generator) -> Tensor:
        """A ``(batch, 3, patch, patch)`` float batch in [0, 1]."""
        out = torch.empty(batch, 3, self.patch, self.patch)
        for i in range(batch):
            out[i] = self.crop(generator)
        return out

    def crop(self, generator: torch.Generator) -> Tensor:
        """One random ``(3, patch, patch)`` crop in [0, 1], flipped at random."""
        p = self.patch
        k = int(torch.randint(len(self.images), (1,), generator=generator))
        img = self.images[k]
        top = int(torch.randint(img.shape[0] - p + 1, (1,), generator=generator))
        left = int(torch.randint(img.shape[1] - p + 1, (1,), generator=generator))
        crop = torch.from_numpy(img[top : top + p, left : left + p]).permute(2, 0, 1)
        if torch.rand(1, generator=generator) < 0.5:
            crop = crop.flip(-1)
        if torch.rand(1, generator=generator) < 0.5:
            crop = crop.flip(-2)
        return crop.float().div_(255)


def _fit(rgb: np.ndarray, patch: int) -> np.ndarray:
    """An image smaller than the patch, replicate-padded up to it."""
    h, w = rgb.shape[:2]
    if h >= patch and w >= patch:
        return rgb
    return np.pad(rgb, ((0, max(0, patch - h)), (0, max(0, patch - w)), (0, 0)), mode="edge")


def parse_mix(items: list[str] | dict[str, float] | None) -> dict[str, float]:
    """``["screen=0.15", "art/=0.1"]`` as ``{"screen": 0.15, "art/": 0.1}``, checked: each
    fraction in (0, 1), their sum below 1 (the rest is ``--data``'s)."""
    if not items:
        return {}
    if isinstance(items, dict):
        mix = {str(k): float(v) for k, v in items.items()}
    else:
        mix = {}
        for item in items:
            source, sep, fraction = item.rpartition("=")
            try:
                value = float(fraction)
            except ValueError:
                value = None
            if not sep or not source or value is None:
                raise ValueError(f"--mix {item!r}: expected SOURCE=FRACTION, SOURCE a folder "
                                 f"or one of {sorted(RENDERERS)}")
            if source in mix:
                raise ValueError(f"--mix names {source!r} twice")
            mix[source] = value
    for source, value in mix.items():
        if not 0 < value < 1:
            raise ValueError(f"--mix {source}={value}: a fraction must lie in (0, 1)")
    if sum(mix.values()) >= 1:
        raise ValueError(f"--mix fractions sum to {sum(mix.values()):g}: they must leave "
                         "some of each batch to --data")
    return mix


def source_of(cumulative: Tensor, u: Tensor) -> Tensor:
    """The source index of each uniform draw in ``u``: source ``i`` for ``u`` in
    ``[cumulative[i - 1], cumulative[i])`` (``cumulative``: the sources' normalised
    cumulative weights)."""
    return torch.searchsorted(cumulative, u.contiguous(), right=True).clamp_(
        max=len(cumulative) - 1)


class MixedSampler:
    """Crops drawn from several samplers: each crop's source is drawn on its own, source
    ``i`` with probability ``weights[i]`` (the first source takes what the others leave).

    ``sources`` for ``--data`` and ``--mix``: a folder, or a generated domain's name
    (rendered in memory, :meth:`PatchSampler.rendered`) when no such folder exists.
    """

    def __init__(self, samplers: list[PatchSampler], weights: list[float]) -> None:
        if len(samplers) != len(weights) or not samplers:
            raise ValueError("one weight per sampler")
        self.samplers = samplers
        self.patch = samplers[0].patch
        self.cumulative = torch.tensor(weights, dtype=torch.float64).cumsum(0)
        self.cumulative /= self.cumulative[-1].clone()

    @classmethod
    def from_mix(cls, data: str | os.PathLike, mix: dict[str, float], patch: int
                 ) -> MixedSampler:
        samplers = [PatchSampler(data, patch)]
        for source in mix:
            if os.path.exists(source) or source not in RENDERERS:
                samplers.append(PatchSampler(source, patch))
            else:
                samplers.append(PatchSampler.rendered(source, patch))
        return cls(samplers, [1 - sum(mix.values()), *mix.values()])

    def __len__(self) -> int:
        return sum(len(s) for s in self.samplers)

    def sources(self, batch: int, generator: torch.Generator) -> Tensor:
        """The source index of each of ``batch`` crops."""
        return source_of(self.cumulative,
                         torch.rand(batch, generator=generator, dtype=torch.float64))

    def sample(self, batch: int, generator: torch.Generator) -> Tensor:
        """A ``(batch, 3, patch, patch)`` float batch in [0, 1]."""
        out = torch.empty(batch, 3, self.patch, self.patch)
        for i, k in enumerate(self.sources(batch, generator).tolist()):
            out[i] = self.samplers[k].crop(generator)
        return out


class DeviceCrops:
    """The images of a :class:`PatchSampler` or :class:`MixedSampler`, held as one uint8
    tensor on the training device, cut into batches there.

    Each crop draws its source (with the mix's proportions), an image of that source, a
    position and two flips from one ``(batch, 6)`` uniform draw of a generator on the
    device; the flips are folded into the gather's indices. A batch costs a few kernels and
    no host work, no transfer and no synchronisation.

    Images are zero-padded to the largest one's size; a crop never reaches the padding.
    """

    def __init__(self, sampler: PatchSampler | MixedSampler, device: torch.device | str) -> None:
        samplers = sampler.samplers if isinstance(sampler, MixedSampler) else [sampler]
        cumulative = (sampler.cumulative if isinstance(sampler, MixedSampler)
                      else torch.ones(1, dtype=torch.float64))
        self.patch = p = sampler.patch
        images = [img for s in samplers for img in s.images]
        height = max(img.shape[0] for img in images)
        width = max(img.shape[1] for img in images)
        data = torch.zeros(len(images), height, width, 3, dtype=torch.uint8)
        for k, img in enumerate(images):
            data[k, : img.shape[0], : img.shape[1]] = torch.from_numpy(img)
        self.device = torch.device(device)
        self.data = data.to(self.device)
        # Per image: how many crop positions fit down and across.
        self.room = torch.tensor([[img.shape[0] - p + 1, img.shape[1] - p + 1]
                                  for img in images], device=self.device)
        counts = [len(s) for s in samplers]
        self.first = torch.tensor([sum(counts[:i]) for i in range(len(counts))],
                                  device=self.device)
        self.count = torch.tensor(counts, device=self.device)
        self.cumulative = cumulative.to(torch.float32).to(self.device)
        self.offsets = torch.arange(p, device=self.device)

    def __len__(self) -> int:
        return self.data.shape[0]

    def sample(self, batch: int, generator: torch.Generator) -> Tensor:
        """A ``(batch, 3, patch, patch)`` float batch in [0, 1] on the device
        (``generator`` must live there too)."""
        u = torch.rand(batch, 6, generator=generator, device=self.device)
        source = source_of(self.cumulative, u[:, 0])
        count = self.count[source]
        k = self.first[source] + torch.minimum((u[:, 1] * count).long(), count - 1)
        room = self.room[k]
        top = torch.minimum((u[:, 2] * room[:, 0]).long(), room[:, 0] - 1)
        left = torch.minimum((u[:, 3] * room[:, 1]).long(), room[:, 1] - 1)
        ramp = self.offsets
        rows = top[:, None] + torch.where(u[:, 5:6] < 0.5, ramp.flip(0), ramp)
        cols = left[:, None] + torch.where(u[:, 4:5] < 0.5, ramp.flip(0), ramp)
        crops = self.data[k[:, None, None], rows[:, :, None], cols[:, None, :]]
        return crops.permute(0, 3, 1, 2).float().div_(255)
