"""One-call functions: ``compress(image) -> bytes`` and ``decompress(bytes) -> image``."""

from __future__ import annotations

import copy
import functools
import os

from PIL import Image

from slimcodec.bitstream import Header, unpack
from slimcodec.codec import Codec
from slimcodec.errors import UnknownModelError
from slimcodec.utils.image import ImageLike
from slimcodec.zoo import find_by_fingerprint, is_model_path

__all__ = ["DEFAULT_MODEL", "codec_for", "compress", "decompress", "read_header", "writer_of"]

DEFAULT_MODEL = "slimcae"

ModelLike = str | os.PathLike | Codec


@functools.lru_cache(maxsize=8)
def _registered_codec(name: str) -> Codec:
    return Codec.load(name)


def codec_for(model: ModelLike, max_pixels: int | None = None) -> Codec:
    """A codec for a registered name (loaded once per process), a model file, or a codec;
    with ``max_pixels``, one that refuses larger images."""
    if isinstance(model, Codec):
        codec = model
    elif is_model_path(model):
        codec = Codec.load(model)
    else:
        codec = _registered_codec(str(model))
    return _limited(codec, max_pixels)


def _limited(codec: Codec, max_pixels: int | None) -> Codec:
    """``codec``, or a copy of it with another pixel limit (the cached one stays as it is)."""
    if max_pixels is None or max_pixels == codec.max_pixels:
        return codec
    limited = copy.copy(codec)
    limited.max_pixels = int(max_pixels)
    return limited


def compress(image: ImageLike, width: int | None = None, model: ModelLike = DEFAULT_MODEL,
             *, lmbda: float | None = None, refine: int = 0,
             max_pixels: int | None = None) -> bytes:
    """Compress an image (path, PIL image or uint8 array) to container bytes.

    ``lmbda`` sets the rate of a variable-rate model; ``refine`` runs that many steps of
    latent refinement (:mod:`slimcodec.refine`; the file decodes as any other);
    ``max_pixels`` overrides the codec's limit (:data:`~slimcodec.codec.DEFAULT_MAX_PIXELS`).
    """
    return codec_for(model, max_pixels).encode(image, width, lmbda, refine)


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


def decompress(data: bytes, model: ModelLike | None = None, *, max_pixels: int | None = None
               ) -> Image.Image:
    """Decompress container bytes to a PIL image.

    Without ``model``, the registered pretrained model whose fingerprint the file carries.
    A file declaring more than ``max_pixels`` pixels is refused before decoding.
    """
    return codec_for(writer_of(data) if model is None else model, max_pixels).decode(data)
