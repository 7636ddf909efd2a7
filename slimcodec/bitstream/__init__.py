"""The slimcodec container format (see ``docs/bitstream.md``)."""

from .container import *  # noqa: F403
from .container import __all__  # noqa: F401
