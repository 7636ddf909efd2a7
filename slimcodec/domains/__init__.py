"""Content domains other than photos, for domain adaptation: deterministic generators.

``GENERATORS`` maps a domain's name to the function that writes ``count`` of its images
into a folder (``slimcodec generate NAME -o DIR``), ready for ``slimcodec adapt --data DIR``.
"""

from slimcodec.domains.illustration import write_illustrations
from slimcodec.domains.screen import write_screens

GENERATORS = {"screen": write_screens, "illustration": write_illustrations}

__all__ = ["GENERATORS"]
