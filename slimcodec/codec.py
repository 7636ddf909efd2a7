"""Image <-> container bytes with a given model.

:class:`Codec` binds a model (eval mode, CDF tables built, fingerprint known) to the
container format and the image rules of :mod:`slimcodec.utils.image`: arbitrary sizes are
replicate-padded to a multiple of 16 and cropped back after decoding.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import torch
from PIL import Image

from slimcodec.bitstream import MAX_IMAGE_SIDE, Bitstream, Header, RateKind, pack, unpack
from slimcodec.errors import CorruptBitstreamError, ImageError, ModelMismatchError
from slimcodec.models import SlimCAE
from slimcodec.utils.image import ImageLike, crop, from_tensor, load_rgb, pad_to_multiple, to_tensor
from slimcodec.zoo import find_by_fingerprint, fingerprint, load_model

__all__ = ["Codec"]


class Codec:
    """Compress images to slimcodec containers and back with one model.

    Args:
        model: a :class:`~slimcodec.models.SlimCAE` (put in eval mode; its entropy models'
            CDF tables are built if missing).
        name: how to call the model in messages (a registered name or a file path).

    A codec is safe to share between threads: calls are serialised, since the model's
    active width is per-model state.
    """

    def __init__(self, model: SlimCAE, name: str | None = None) -> None:
        model.eval()
        model.update()
        self.model = model
        self.name = name or type(model).__name__
        self.fingerprint = fingerprint(model)
        self._lock = threading.Lock()

    @classmethod
    def load(cls, name_or_path: str | os.PathLike) -> Codec:
        """A codec for a registered pretrained model or a model file."""
        return cls(load_model(name_or_path), str(name_or_path))

    @property
    def widths(self) -> tuple[int, ...]:
        return self.model.widths

    def encode(self, image: ImageLike, width: int | None = None) -> bytes:
        """Compress ``image`` (path, PIL image or uint8 array) at ``width`` (default: widest)."""
        rgb, grayscale = load_rgb(image)
        return self.encode_rgb(rgb, width, grayscale)

    def encode_rgb(self, rgb: np.ndarray, width: int | None = None, grayscale: bool = False
                   ) -> bytes:
        """Compress an ``(H, W, 3)`` uint8 array."""
        height, img_width = rgb.shape[:2]
        if not (0 < height <= MAX_IMAGE_SIDE and 0 < img_width <= MAX_IMAGE_SIDE):
            raise ImageError(
                f"image is {height}x{img_width}; each side must be 1..{MAX_IMAGE_SIDE} pixels"
            )
        width = self.widths[0] if width is None else int(width)
        if width not in self.widths:
            raise ValueError(f"width {width} is not one of {list(self.widths)}")
        x = pad_to_multiple(to_tensor(rgb), self.model.downsampling)
        with self._lock, torch.inference_mode(), self.model.using_width(width):
            out = self.model.compress(x)
        strings = tuple(s[0] for s in out["strings"])  # batch of one
        header = Header(self.fingerprint, width, (height, img_width), grayscale)
        return pack(Bitstream(header, strings))

    def check(self, header: Header) -> None:
        """Raise unless this codec's model can decode a file with ``header``."""
        if header.fingerprint != self.fingerprint:
            writer = find_by_fingerprint(header.fingerprint)
            writer = f"registered model {writer!r}" if writer else "an unregistered model"
            raise ModelMismatchError(
                f"file was written by {writer} (fingerprint {header.fingerprint.hex()}), "
                f"not by {self.name} (fingerprint {self.fingerprint.hex()})"
            )
        if header.width not in self.widths:
            raise CorruptBitstreamError(f"corrupt slimcodec file: no width {header.width}")
        if header.rate_kind != RateKind.NONE:
            raise ModelMismatchError(f"{self.name} is single-rate; file has a rate setting")
        if header.domain != 0:
            raise ModelMismatchError(f"{self.name} has no domain adapter {header.domain}")

    def decode_rgb(self, data: bytes) -> tuple[np.ndarray, Header]:
        """Decompress to an ``(H, W, 3)`` uint8 array; also returns the header."""
        bitstream = unpack(data)
        header = bitstream.header
        self.check(header)
        if len(bitstream.strings) != 1:
            raise CorruptBitstreamError(
                f"corrupt slimcodec file: {len(bitstream.strings)} strings, SlimCAE writes 1"
            )
        factor = self.model.downsampling
        padded = [-(-side // factor) * factor for side in header.image_size]
        shape = self.model.latent_shape(*padded)
        with self._lock, torch.inference_mode(), self.model.using_width(header.width):
            x_hat = self.model.decompress([[s] for s in bitstream.strings], shape)["x_hat"]
        return from_tensor(crop(x_hat, header.image_size)), header

    def decode(self, data: bytes) -> Image.Image:
        """Decompress to a PIL image (mode ``L`` for grayscale sources, else ``RGB``)."""
        rgb, header = self.decode_rgb(data)
        image = Image.fromarray(rgb, "RGB")
        return image.convert("L") if header.grayscale else image
