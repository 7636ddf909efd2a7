"""Package data: the sample photo (see README.md beside it)."""

from importlib import resources
from pathlib import Path

__all__ = ["sample_image"]


def sample_image() -> Path:
    """The sample photo shipped with the package (see slimcodec/data/README.md)."""
    return Path(str(resources.files("slimcodec.data").joinpath("sample.png")))
