"""Codec models: compressai ``CompressionModel`` subclasses."""

from .slimcae import DEFAULT_WIDTHS, SlimCAE

__all__ = ["DEFAULT_WIDTHS", "SlimCAE"]
