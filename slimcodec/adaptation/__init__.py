"""Domain adaptation without forgetting (issue 13): adapters and ``slimcodec adapt``."""

from .adapters import (
    ADAPTER_METHODS,
    MIXABLE_METHODS,
    AdapterMixture,
    DomainAdapter,
    domain_id,
    load_adapter,
    save_adapter,
)
from .train import DEFAULT_LR, DEFAULT_STEPS, METHODS, AdaptResult, adapt

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
