"""One-call functions: ``compress(image) -> bytes`` and ``decompress(bytes) -> image``."""

from __future__ import annotations

import functools
import os

from PIL import Image

from slimcodec.bitstream import Header, unpack
from slimcodec.codec import Codec
from slimcodec.errors import UnknownModelError
from slimcodec.utils.image import ImageLike
from slimcodec.zoo import find_by_fingerprint

__all__ = ["DEFAULT_MODEL", "codec_for", "compress", "decompress", "read_header", "writer_of"]

DEFAULT_MODEL = "slimcae"

ModelLike = str | os.PathLike | Codec


@functools.lru_cache(maxsize=8)
def _registered_codec(name: str) -> Codec:
    return Codec.load(name)


def codec_for(model: ModelLike) -> Codec:
    """A codec for a registered name (loaded once per process), a model file, or a codec."""
    if isinstance(model, Codec):
        return model
    if os.path.exists(model):
        return Codec.load(model)
    return _registered_codec(str(model))


def compress(image: ImageLike, width: int | None = None, model: ModelLike = DEFAULT_MODEL
             ) -> bytes:
    """Compress an image (path, PIL image or uint8 array) to container bytes."""
    return codec_for(model).encode(image, width)


def read_header(data: bytes) -> Header:
    """The validated header of a container (raises ``BitstreamError`` on bad bytes)."""
    return unpack(data).header


def writer_of(data: bytes) -> str:
    """The registered pretrained model that wrote ``data``, found by its fingerprint."""
    fp = read_header(data).fingerprint
    name = find_by_fingerprint(fp)
    if name is None:
        raise UnknownModelError(
            f"file was written by a model that is not registered (fingerprint {fp.hex()}); "
            "pass the model file that wrote it"
        )
    return name


def decompress(data: bytes, model: ModelLike | None = None) -> Image.Image:
    """Decompress container bytes to a PIL image.

    Without ``model``, the registered pretrained model whose fingerprint the file carries.
    """
    return codec_for(writer_of(data) if model is None else model).decode(data)
