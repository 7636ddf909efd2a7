"""slimcodec: width-switchable learned image codecs (SlimCAE) for edge devices.

>>> import slimcodec
>>> data = slimcodec.compress("photo.png", width=96)      # bytes of a .slc container
>>> image = slimcodec.decompress(data)                     # PIL image
>>> model = slimcodec.create_model("slimcae", pretrained=True)

The names below are loaded on first use: ``import slimcodec.bitstream`` (the container and
the entropy coder) needs numpy alone, so the torch-free edge runtime can import it.
"""

import importlib
import warnings
from typing import Any

from slimcodec.errors import *  # noqa: F403
from slimcodec.errors import __all__ as _errors

# compressai 1.2.8 still calls torch.jit.script, which torch 2.14 deprecates with a warning
# on every import; it is not actionable for our users.
warnings.filterwarnings(
    "ignore", message="`torch.jit.script` is deprecated", category=FutureWarning
)

__version__ = "0.6.0"

_LAZY = {
    "DEFAULT_MODEL": "slimcodec.api",
    "compress": "slimcodec.api",
    "decompress": "slimcodec.api",
    "read_header": "slimcodec.api",
    "Codec": "slimcodec.codec",
    "create_model": "slimcodec.zoo",
    "list_models": "slimcodec.zoo",
}

__all__ = ["__version__", *_LAZY, *_errors]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'slimcodec' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
