"""Model registry, model files and fingerprints."""

from .checkpoint import ARCHITECTURES, fingerprint, load_model_file, save_model_file
from .registry import (
    WEIGHTS_DIR,
    create_model,
    find_by_fingerprint,
    is_model_path,
    list_models,
    load_model,
    model_meta,
    register_model,
)

__all__ = [
    "ARCHITECTURES",
    "WEIGHTS_DIR",
    "create_model",
    "find_by_fingerprint",
    "fingerprint",
    "is_model_path",
    "list_models",
    "load_model",
    "load_model_file",
    "model_meta",
    "register_model",
    "save_model_file",
]
