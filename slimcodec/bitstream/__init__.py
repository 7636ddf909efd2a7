"""The slimcodec container format (see ``docs/bitstream.md``)."""

from .container import (
    FINGERPRINT_SIZE,
    FORMAT_VERSION,
    MAGIC,
    MAX_IMAGE_SIDE,
    Bitstream,
    Header,
    RateKind,
    pack,
    unpack,
)

__all__ = [
    "FINGERPRINT_SIZE",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_IMAGE_SIDE",
    "Bitstream",
    "Header",
    "RateKind",
    "pack",
    "unpack",
]
