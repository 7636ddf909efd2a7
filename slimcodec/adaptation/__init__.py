"""Domain adaptation without forgetting (issue 13): adapters, their gate, ``slimcodec adapt``.

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
    adapter_fingerprint,
    domain_id,
    load_adapter,
    save_adapter,
)
from .gate import DomainGate, load_gate, save_gate

_TRAINING_NAMES = ("DEFAULT_LR", "DEFAULT_STEPS", "METHODS", "AdaptResult", "GateResult",
                   "adapt", "train_gate")

__all__ = [
    "ADAPTER_METHODS",
    "DEFAULT_LR",
    "DEFAULT_STEPS",
    "METHODS",
    "MIXABLE_METHODS",
    "AdaptResult",
    "AdapterMixture",
    "DomainAdapter",
    "DomainGate",
    "GateResult",
    "adapt",
    "adapter_fingerprint",
    "domain_id",
    "load_adapter",
    "load_gate",
    "save_adapter",
    "save_gate",
    "train_gate",
]


def __getattr__(name: str) -> Any:
    if name in _TRAINING_NAMES:
        from . import train

        return getattr(train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
