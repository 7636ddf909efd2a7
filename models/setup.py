"""Build a models distribution (``slimcodec-models``, ``-hp``, ``-hpc``) from the
checkout around its folder: the distribution's name comes from the pyproject.toml beside
this file, and it holds the weights files (``weights_files``: a model's and its adapters') of
every shipped model the catalog assigns to it (``SHIPPED[name]["distribution"]``) but the
default's. ``models-hp*/setup.py`` are links to
this file, so that every models distribution builds one way.

The weights files are copied into ``_stage/<package>/`` first: a wheel may only hold files
from inside the project folder. ``SLIMCODEC_SOURCE`` names another checkout to copy from.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

from setuptools import setup

# absolute(), not resolve(): models-hp/setup.py is a link here and must stage in models-hp/
HERE = Path(__file__).absolute().parent
SOURCE = Path(os.environ.get("SLIMCODEC_SOURCE", HERE.parent))
DISTRIBUTION = re.search(r'^name = "([^"]+)"', (HERE / "pyproject.toml").read_text(),
                         re.M).group(1)
PACKAGE = DISTRIBUTION.replace("-", "_")
STAGE = HERE / "_stage" / PACKAGE


def stage() -> None:
    if not (SOURCE / "slimcodec" / "zoo" / "catalog.py").is_file():
        if STAGE.is_dir():  # building from an sdist: the staged copy is all there is
            return
        raise SystemExit(f"{DISTRIBUTION}: no slimcodec checkout at {SOURCE}")
    sys.path.insert(0, str(SOURCE))  # the catalog needs no torch
    from slimcodec.zoo.catalog import DEFAULT_MODEL, SHIPPED, WEIGHTS_DIR, weights_files

    shutil.rmtree(STAGE.parent, ignore_errors=True)
    STAGE.mkdir(parents=True)
    (STAGE / "__init__.py").write_text(
        f'"""Weights of slimcodec\'s shipped models ({DISTRIBUTION})."""\n')
    for name, entry in SHIPPED.items():
        if name != DEFAULT_MODEL and entry["distribution"] == DISTRIBUTION:
            for file in weights_files(name):  # the model's, and its adapters'
                shutil.copy2(WEIGHTS_DIR / file, STAGE / file)
    version = re.search(r'^__version__ = "([^"]+)"',
                        (SOURCE / "slimcodec" / "__init__.py").read_text(), re.M).group(1)
    (STAGE / "VERSION").write_text(version + "\n")


stage()
setup(
    version=(STAGE / "VERSION").read_text().strip(),
    package_dir={"": "_stage"},
    packages=[PACKAGE],
    package_data={PACKAGE: ["*.pt", "VERSION"]},
)
