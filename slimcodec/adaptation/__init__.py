"""Domain adaptation without forgetting (issue 13): adapters and ``slimcodec adapt``.

The adapters (:mod:`.adapters`) are what a codec, a bundle export or a decoder needs; the
adaptation loop (:mod:`.train`) needs :mod:`slimcodec.training` too, so its names are
imported on first use: loading or mixing adapters never imports the training side.
"""

from typing import Any

from .adapters import (
    ADAPTER_METHODS,
    MIXABLE_METHODS,
    AdapterMixture,
    DomainAdapter,
    domain_id,
    load_adapter,
    save_adapter,
)

_TRAINING_NAMES = ("DEFAULT_LR", "DEFAULT_STEPS", "METHODS", "AdaptResult", "adapt")

__all__ = [
    "ADAPTER_METHODS",
    "DEFAULT_LR",
    "DEFAULT_STEPS",
    "METHODS",
    "MIXABLE_METHODS",
    "AdaptResult",
    "AdapterMixture",
    "DomainAdapter",
    "adapt",
    "domain_id",
    "load_adapter",
    "save_adapter",
]


def __getattr__(name: str) -> Any:
    if name in _TRAINING_NAMES:
        from . import train

        return getattr(train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
