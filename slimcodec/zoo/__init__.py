"""Model registry, model files and fingerprints.

The names below load on first use: :mod:`slimcodec.zoo.catalog` (what ships: the default
model, fingerprints, retired models) needs no torch, so the light commands (``slimcodec
info``, ``models``, ``select``) import it without loading the models.
"""

import importlib
from typing import Any

_LAZY = {
    "ARCHITECTURES": "checkpoint",
    "fingerprint": "checkpoint",
    "load_model_file": "checkpoint",
    "save_model_file": "checkpoint",
    "DEFAULT_MODEL": "catalog",
    "RETIRED": "catalog",
    "SHIPPED": "catalog",
    "WEIGHTS_DIR": "catalog",
    "retired_writer": "catalog",
    "shipped_table": "catalog",
    "create_model": "registry",
    "find_by_fingerprint": "catalog",
    "is_model_path": "registry",
    "list_models": "registry",
    "load_model": "registry",
    "model_meta": "registry",
    "register_model": "registry",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
