"""Slimmable layers: convolutions and GDN variants that share weights across widths."""

from .gdn import GDN_VARIANTS, SlimGDN, SlimGDNPlus, SwitchGDN, make_gdn
from .slimmable import SlimConv2d, SlimConvTranspose2d, Slimmable

__all__ = [
    "GDN_VARIANTS",
    "SlimConv2d",
    "SlimConvTranspose2d",
    "SlimGDN",
    "SlimGDNPlus",
    "Slimmable",
    "SwitchGDN",
    "make_gdn",
]
