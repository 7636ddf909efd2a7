"""Build slimcodec-edge from the checkout around this folder (see pyproject.toml).

The files are copied into ``_stage/`` first: a wheel may only hold files from inside the
project folder. ``SLIMCODEC_SOURCE`` names another checkout to copy from (the packaging test
builds a copy of this folder elsewhere).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
SOURCE = Path(os.environ.get("SLIMCODEC_SOURCE", HERE.parent))
STAGE = HERE / "_stage"

# What the edge runtime imports, and nothing more (the packaging test checks both ways).
FILES = {
    "slimcodec": ["__init__.py", "errors.py", "gating.py", "index_map.py", "integer_scales.py",
                  "latent.py",
                  "palette.py", "rate_control.py", "residual.py", "scaling.py", "tiling.py",
                  "bitstream",
                  "utils/__init__.py", "utils/console.py", "utils/image.py", "utils/io.py",
                  "utils/memory.py", "utils/metrics.py",
                  "zoo/__init__.py", "zoo/catalog.py"],
    "export": ["__init__.py", "bundle.py", "select.py", "edge"],
}
PACKAGES = {"slimcodec": "slimcodec", "export": "slimcodec_edge"}


def stage() -> None:
    if not (SOURCE / "slimcodec" / "__init__.py").is_file():
        if STAGE.is_dir():  # building from an sdist: the staged copy is all there is
            return
        raise SystemExit(f"slimcodec-edge: no slimcodec checkout at {SOURCE}")
    shutil.rmtree(STAGE, ignore_errors=True)
    skip = shutil.ignore_patterns("__pycache__", "*.so", "*.pyc")
    for folder, names in FILES.items():
        for name in names:
            src, dst = SOURCE / folder / name, STAGE / PACKAGES[folder] / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, ignore=skip)
            else:
                shutil.copy2(src, dst)


def version() -> str:
    text = (STAGE / "slimcodec" / "__init__.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


stage()
setup(
    version=version(),
    package_dir={"": "_stage"},
    packages=["slimcodec", "slimcodec.bitstream", "slimcodec.utils", "slimcodec.zoo",
              "slimcodec_edge",
              "slimcodec_edge.edge"],
    ext_modules=[Extension("slimcodec.bitstream._rans",
                           sources=["_stage/slimcodec/bitstream/_rans.c"],
                           extra_compile_args=["-O2"], optional=True)],
)
