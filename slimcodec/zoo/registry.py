"""The model registry, after timm: ``create_model(name, pretrained=True)``.

A registered name is a factory function (the architecture with its default config) and,
optionally, a weights file shipped in ``slimcodec/zoo/weights/`` with a model card beside
it. Nothing is ever downloaded: pretrained weights are package data, the default model's in
the ``slimcodec`` wheel and the others' in the ``slimcodec-models`` distributions
(:func:`~slimcodec.zoo.catalog.weights_path` finds them).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from slimcodec import __version__
from slimcodec.errors import ModelFileError, UnknownModelError
from slimcodec.models import (
    DEFAULT_WIDTHS,
    CheckerboardSlimCAE,
    HyperpriorSlimCAE,
    ModulatedSlimCAE,
    SlimCAE,
)

from .catalog import DEFAULT_MODEL, install_hint, retired_error, weights_path
from .checkpoint import load_model_file, read_model_meta

__all__ = [
    "create_model",
    "is_model_path",
    "list_models",
    "load_model",
    "model_meta",
    "register_model",
]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    factory: Callable[..., nn.Module]
    weights: str | None  # file name in WEIGHTS_DIR

    @property
    def weights_path(self) -> Path | None:
        """The installed weights file (None if the model ships none, or it is not
        installed)."""
        return weights_path(self.weights) if self.weights else None

    @property
    def has_weights(self) -> bool:
        return self.weights_path is not None


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(weights: str | None = None, name: str | None = None
                   ) -> Callable[[Callable], Callable]:
    """Register a factory under ``name`` (default: its function name), with an optional
    shipped weights file."""

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        nonlocal name
        name = name or factory.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelEntry(name, factory, weights)
        return factory

    return decorator


def list_models(pretrained: bool = False) -> list[str]:
    """Registered names; with ``pretrained=True`` only those that ship weights."""
    return sorted(n for n, e in _REGISTRY.items() if e.has_weights or not pretrained)


def _entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        if (retired := retired_error(name)) is not None:
            raise retired from None
        raise UnknownModelError(
            f"unknown model {name!r}; registered models: {', '.join(list_models())}"
        ) from None


def create_model(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Build a registered model, with its shipped weights when ``pretrained``.

    ``kwargs`` override the factory's config (widths, gdn, ...); they cannot be combined
    with ``pretrained=True``, since the weights fix the architecture.
    """
    entry = _entry(name)
    if not pretrained:
        return entry.factory(**kwargs)
    if kwargs:
        raise ValueError(f"pretrained {name!r} has a fixed config; got overrides {sorted(kwargs)}")
    if entry.weights and not entry.has_weights:
        raise ModelFileError(
            f"the pretrained weights of {name} are not installed: they come with "
            f"{install_hint(name)} at version {__version__}; this installation has the "
            f"default model's, {DEFAULT_MODEL}")
    if not entry.has_weights:
        raise retired_error(name) or UnknownModelError(
            f"model {name!r} ships no pretrained weights")
    return load_model_file(entry.weights_path)


def is_model_path(name_or_path: str | os.PathLike) -> bool:
    """Whether ``name_or_path`` names a model file rather than a registered model.

    A registered name wins over a file of the same name in the working directory (a folder
    called ``slimcae`` must not shadow the default model); to load such a file, write it as
    a path (``./slimcae``). Anything with a directory separator or a file suffix, or that is
    no registered name but exists, is a path.
    """
    if isinstance(name_or_path, os.PathLike):
        return True
    name = str(name_or_path)
    if name in _REGISTRY:
        return False
    return os.sep in name or "/" in name or bool(Path(name).suffix) or os.path.exists(name)


def load_model(name_or_path: str | os.PathLike) -> nn.Module:
    """A model file, or a registered name with its pretrained weights (see
    :func:`is_model_path`)."""
    if is_model_path(name_or_path):
        return load_model_file(name_or_path)
    return create_model(str(name_or_path), pretrained=True)


def model_meta(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """The ``meta`` dict of a model file or registered model's weights ({} if none)."""
    if is_model_path(name_or_path):
        return read_model_meta(name_or_path)
    entry = _entry(str(name_or_path))
    return read_model_meta(entry.weights_path) if entry.has_weights else {}


# -- the shipped models -------------------------------------------------------------------


@register_model(weights="slimcae.pt")
def slimcae(**kwargs: Any) -> SlimCAE:
    """SlimCAE at widths 192/144/96/72/48 with SlimGDN+, one λ per width (CVPR 2021)."""
    return SlimCAE(**{"widths": DEFAULT_WIDTHS, "gdn": "slim+", **kwargs})


@register_model(name="slimcae-vr")
def slimcae_vr(**kwargs: Any) -> ModulatedSlimCAE:
    """SlimCAE-VR: SlimCAE with λ-modulation, a continuous rate inside every width (the
    architecture; its first trained weights were retired after 0.1.0)."""
    return ModulatedSlimCAE(**{"widths": DEFAULT_WIDTHS, "gdn": "slim+", "latent_gain": True,
                               **kwargs})


#: The λ ranges `slimcae-vr5` and `slimcae-hp` were trained with.
_RANGES = ((0.002, 0.8), (0.0015, 0.4), (0.001, 0.2), (0.0007, 0.025), (0.0005, 0.012))


@register_model(name="slimcae-vr5", weights="slimcae-vr5.pt")
def slimcae_vr5(**kwargs: Any) -> ModulatedSlimCAE:
    """SlimCAE-VR retrained from revived latent channels, one entropy model per width and
    higher λ at the wide widths, 71,000 steps (the last 11,000 on crops of 128²)."""
    return ModulatedSlimCAE(**{"widths": DEFAULT_WIDTHS, "gdn": "slim+", "latent_gain": True,
                               "rate_anchors": 1, "lambda_ranges": _RANGES, **kwargs})


@register_model(name="slimcae-hp", weights="slimcae-hp.pt")
def slimcae_hp(**kwargs: Any) -> HyperpriorSlimCAE:
    """SlimCAE-HP: `slimcae-vr5`'s transforms with a slimmable mean-scale hyperprior (its
    latent coded with per-element Gaussians whose scales an integer network predicts from
    z), the same λ ranges."""
    return HyperpriorSlimCAE(**{"widths": DEFAULT_WIDTHS, "gdn": "slim+", "latent_gain": True,
                                "lambda_ranges": _RANGES, **kwargs})


@register_model(name="slimcae-hp2", weights="slimcae-hp2.pt")
def slimcae_hp2(**kwargs: Any) -> HyperpriorSlimCAE:
    """SlimCAE-HP with half-width hyper-syntheses (a faster decoder), trained with generated
    screens and illustrations in the mix: `slimcae-hp`'s transforms fine-tuned."""
    return HyperpriorSlimCAE(**{"widths": DEFAULT_WIDTHS, "gdn": "slim+", "latent_gain": True,
                                "lambda_ranges": _RANGES, "hyper_hidden": 0.5, **kwargs})


@register_model(name="slimcae-hpc", weights="slimcae-hpc.pt")
def slimcae_hpc(**kwargs: Any) -> CheckerboardSlimCAE:
    """SlimCAE-HPC: `slimcae-hp` with a checkerboard context on the latent's means (He et
    al., CVPR 2021; the scales stay the hyperprior's), the same λ ranges: `slimcae-hp`'s
    weights and a context trained around them (`slimcodec train --stage context`)."""
    return CheckerboardSlimCAE(**{"widths": DEFAULT_WIDTHS, "gdn": "slim+", "latent_gain": True,
                                  "lambda_ranges": _RANGES, **kwargs})
