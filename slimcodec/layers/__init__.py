"""Slimmable layers: convolutions and GDN variants that share weights across widths, and the
factorized entropy bottleneck the models use."""

from .entropy import SyncFreeEntropyBottleneck
from .gdn import GDN_VARIANTS, SlimGDN, SlimGDNPlus, SwitchGDN, make_gdn, reparametrised_once
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
    "SyncFreeEntropyBottleneck",
    "make_gdn",
    "reparametrised_once",
]
