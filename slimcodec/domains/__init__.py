"""Content domains other than photos, for domain adaptation: deterministic generators.

``GENERATORS`` maps a domain's name to the function that writes ``count`` of its images
into a folder (``slimcodec generate NAME -o DIR``), ready for ``slimcodec adapt --data DIR``;
``RENDERERS`` to the function that renders one image from a seed, in memory (what
``slimcodec train --mix screen=0.2`` draws from). ``screen-subpixel``: the screens' layouts
with subpixel (ClearType-like) text, which no seed of ``screen`` draws.
"""

from functools import partial

from slimcodec.domains.illustration import render_illustration, write_illustrations
from slimcodec.domains.screen import render_screen, write_screens

GENERATORS = {"screen": write_screens, "illustration": write_illustrations,
              "screen-subpixel": partial(write_screens, text="subpixel")}
RENDERERS = {"screen": render_screen, "illustration": render_illustration,
             "screen-subpixel": partial(render_screen, text="subpixel")}

__all__ = ["GENERATORS", "RENDERERS"]
