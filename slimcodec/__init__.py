"""slimcodec: width-switchable learned image codecs (SlimCAE) for edge devices.

>>> import slimcodec
>>> data = slimcodec.compress("photo.png", width=96)      # bytes of a .slc container
>>> image = slimcodec.decompress(data)                     # PIL image
>>> model = slimcodec.create_model("slimcae", pretrained=True)
"""

import warnings

# compressai 1.2.8 still calls torch.jit.script, which torch 2.14 deprecates with a warning
# on every import; it is not actionable for our users.
warnings.filterwarnings(
    "ignore", message="`torch.jit.script` is deprecated", category=FutureWarning
)

from slimcodec.api import DEFAULT_MODEL, compress, decompress, read_header  # noqa: E402
from slimcodec.codec import Codec  # noqa: E402
from slimcodec.errors import *  # noqa: E402, F403
from slimcodec.errors import __all__ as _errors  # noqa: E402
from slimcodec.zoo import create_model, list_models  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "Codec",
    "__version__",
    "compress",
    "create_model",
    "decompress",
    "list_models",
    "read_header",
    *_errors,
]
