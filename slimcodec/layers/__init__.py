"""Slimmable layers: convolutions and GDN variants that share weights across widths."""

from .gdn import GDN_VARIANTS, SlimGDN, SlimGDNPlus, SwitchGDN, make_gdn
from .modulation import LambdaModulation, LatentGain
from .slimmable import SlimConv2d, SlimConvTranspose2d, Slimmable

__all__ = [
    "GDN_VARIANTS",
    "LambdaModulation",
    "LatentGain",
    "SlimConv2d",
    "SlimConvTranspose2d",
    "SlimGDN",
    "SlimGDNPlus",
    "Slimmable",
    "SwitchGDN",
    "make_gdn",
]
