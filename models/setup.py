"""Build slimcodec-models from the checkout around this folder (see pyproject.toml).

The weights files are copied into ``_stage/slimcodec_models/`` first: a wheel may only hold
files from inside the project folder. ``SLIMCODEC_SOURCE`` names another checkout to copy
from.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
SOURCE = Path(os.environ.get("SLIMCODEC_SOURCE", HERE.parent))
STAGE = HERE / "_stage" / "slimcodec_models"


def stage() -> None:
    if not (SOURCE / "slimcodec" / "zoo" / "catalog.py").is_file():
        if STAGE.is_dir():  # building from an sdist: the staged copy is all there is
            return
        raise SystemExit(f"slimcodec-models: no slimcodec checkout at {SOURCE}")
    sys.path.insert(0, str(SOURCE))  # the catalog needs no torch
    from slimcodec.zoo.catalog import DEFAULT_MODEL, SHIPPED, WEIGHTS_DIR

    shutil.rmtree(STAGE.parent, ignore_errors=True)
    STAGE.mkdir(parents=True)
    (STAGE / "__init__.py").write_text(
        '"""The weights of slimcodec\'s shipped models other than the default."""\n')
    for name, entry in SHIPPED.items():
        if name != DEFAULT_MODEL:
            shutil.copy2(WEIGHTS_DIR / entry["weights"], STAGE / entry["weights"])
    version = re.search(r'^__version__ = "([^"]+)"',
                        (SOURCE / "slimcodec" / "__init__.py").read_text(), re.M).group(1)
    (STAGE / "VERSION").write_text(version + "\n")


stage()
setup(
    version=(STAGE / "VERSION").read_text().strip(),
    package_dir={"": "_stage"},
    packages=["slimcodec_models"],
    package_data={"slimcodec_models": ["*.pt", "VERSION"]},
)
