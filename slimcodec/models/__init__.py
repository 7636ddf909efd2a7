"""Codec models: compressai ``CompressionModel`` subclasses."""

from .checkerboard import CheckerboardSlimCAE
from .hyperprior import HyperpriorSlimCAE
from .modulated import DEFAULT_LAMBDA_RANGES, ModulatedSlimCAE
from .slimcae import DEFAULT_WIDTHS, SlimCAE

__all__ = ["DEFAULT_LAMBDA_RANGES", "DEFAULT_WIDTHS", "CheckerboardSlimCAE", "HyperpriorSlimCAE",
           "ModulatedSlimCAE", "SlimCAE"]
