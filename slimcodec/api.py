"""One-call functions: ``compress(image) -> bytes`` and ``decompress(bytes) -> image``."""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path

from PIL import Image

from slimcodec.bitstream import Header, unpack
from slimcodec.codec import Codec
from slimcodec.errors import UnknownModelError, check_positive
from slimcodec.scaling import AUTO, Scale, coded_size, fixed_scale
from slimcodec.utils.image import ImageLike, load_rgb
from slimcodec.zoo import DEFAULT_MODEL, find_by_fingerprint, is_model_path, retired_writer

__all__ = ["DEFAULT_MODEL", "codec_for", "compress", "decompress", "read_header", "writer_of"]

ModelLike = str | os.PathLike | Codec


@functools.lru_cache(maxsize=8)
def _registered_codec(name: str) -> Codec:
    return Codec.load(name)


def codec_for(model: ModelLike, max_pixels: int | None = None,
              tile: int | None = None) -> Codec:
    """A codec for a registered name (loaded once per process), a model file, or a codec;
    with ``max_pixels``, one that refuses larger images; with ``tile``, one whose transforms
    run in tiles of that many latent positions (:mod:`slimcodec.tiling`)."""
    if isinstance(model, Codec):
        codec = model
    elif is_model_path(model):
        codec = Codec.load(model)
    else:
        codec = _registered_codec(str(model))
    return _configured(codec, max_pixels, tile)


def _configured(codec: Codec, max_pixels: int | None, tile: int | None) -> Codec:
    """``codec``, or a copy of it with another pixel limit or tile size (the cached one
    stays as it is)."""
    check_positive(max_pixels=max_pixels, tile=tile)
    if max_pixels in (None, codec.max_pixels) and tile in (None, codec.tile):
        return codec
    configured = copy.copy(codec)
    configured.max_pixels = int(max_pixels or codec.max_pixels)
    configured.tile = int(tile or codec.tile)
    return configured


def compress(image: ImageLike, width: int | None = None, model: ModelLike = DEFAULT_MODEL,
             *, quality: float | None = None, target_bpp: float | None = None,
             target_size: int | None = None, target_psnr: float | None = None,
             lmbda: float | None = None, prefer: str = "quality", refine: int = 0,
             max_latency_ms: float | None = None, profile: str | os.PathLike | None = None,
             max_pixels: int | None = None, tile: int | None = None,
             domain: str | None = None, scale: Scale = AUTO,
             resampling: str = "lanczos", palette: bool = True) -> bytes:
    """Compress an image (path, PIL image or uint8 array) to container bytes.

    The rate, one of (none: the middle of the width's range):

    - ``quality``: 1-100, mapped monotonically onto the width's λ range;
    - ``target_bpp`` / ``target_size`` (the file's bytes) / ``target_psnr``: the λ that
      reaches it, searched over a few encoder passes
      (:func:`~slimcodec.rate_control.encode_to_target`); without ``width``, the width too:
      the widest that reaches the target (``prefer="cost"``: the narrowest);
    - ``lmbda``: the rate-distortion weight itself.

    ``width``: one of the model's (default: the model's current width, the widest for a
    registered name); or ``max_latency_ms`` with ``profile`` (a ``slimcodec profile --json``
    file of this model): the widest width whose measured encoder and decoder latency fit.
    ``refine`` runs that many steps of latent refinement (:mod:`slimcodec.refine`; the file
    decodes as any other); ``max_pixels`` overrides the codec's limit
    (:data:`~slimcodec.codec.DEFAULT_MAX_PIXELS`) and ``tile`` the transforms' tile size in
    latent positions of 16 pixels (:data:`~slimcodec.tiling.DEFAULT_TILE`; smaller holds
    less memory and runs slower, :mod:`slimcodec.tiling`). A rate the model cannot reach, or two
    rate settings at once, raise :class:`RateError`.

    ``domain``: None, the codec's :attr:`~slimcodec.codec.Codec.default_domain` (a shipped
    model with shipped domain adapters: the gate ``"auto"``, which keeps per image whichever
    of the model alone and each adapter codes it with the lowest RD loss); ``"source"``: the
    model alone; an adapter's domain; or another gate (:data:`slimcodec.gating.GATES`).

    ``scale``: code the image upsampled by this factor, 1 to 4 (:mod:`slimcodec.scaling`):
    quality beyond the model's ceiling at high rates, for ``scale²`` times the work;
    ``resampling``, its filter (``"lanczos"``, or ``"box"``, which keeps text's edges).
    The default, ``"auto"``, chooses both per image: the lowest RD loss on a probe of the
    image (:func:`~slimcodec.scaling.choose_scale`); for a target, the smallest scale that
    reaches it, or the one the probe prefers at the λ found where that codes the target
    better; with ``max_latency_ms``, the image's own size.

    ``palette``: where the image is drawn in few colours (screens) and it lowers the RD
    loss, the file carries its most frequent colours, onto which every decoder snaps its
    output (:mod:`slimcodec.palette`); False: never.
    """
    from slimcodec.rate_control import encode_with_rate

    codec = codec_for(model, max_pixels, tile)
    domain = codec.default_domain if domain is None else domain
    rgb, grayscale = load_rgb(image, max_pixels=codec.max_pixels)
    if max_latency_ms is not None:  # a width chosen for one coded size
        scale = fixed_scale(scale)
        width = _width_for_latency(codec, width, max_latency_ms, profile,
                                   coded_size(*rgb.shape[:2], scale))
    data, _ = encode_with_rate(codec, rgb, grayscale, width, lmbda=lmbda, quality=quality,
                               target_bpp=target_bpp, target_size=target_size,
                               target_psnr=target_psnr, refine=refine, prefer=prefer,
                               domain=domain, scale=scale, resampling=resampling,
                               palette=palette)
    return data


def _width_for_latency(codec: Codec, width: int | None, max_latency_ms: float,
                       profile: str | os.PathLike | None, image_size: tuple[int, int]) -> int:
    """The widest width of ``codec`` whose profiled latency, scaled to the image's size,
    fits (slimcodec_edge.select's choice)."""
    from slimcodec_edge.select import check_profile, check_tile, load_profile, select_width

    if profile is None:
        raise ValueError("max_latency_ms needs profile=, a `slimcodec profile --json` file")
    if width is not None:
        raise ValueError("give width or max_latency_ms, not both")
    measured = load_profile(profile)
    check_profile(measured, codec.fingerprint)
    check_tile(measured, codec.tile)
    return select_width(measured, max_latency_ms=max_latency_ms, image_size=image_size).width


def read_header(data: bytes) -> Header:
    """The validated header of a container (raises ``BitstreamError`` on bad bytes)."""
    return unpack(data).header


def writer_of(data: bytes) -> str:
    """The registered pretrained model that wrote ``data``, found by its fingerprint."""
    fp = read_header(data).fingerprint
    name = find_by_fingerprint(fp)
    if name is None and (retired := retired_writer(fp)) is not None:
        raise retired
    if name is None:
        raise UnknownModelError(
            f"file was written by a model that is not registered (fingerprint {fp.hex()}); "
            "pass the model file that wrote it"
        )
    return name


def decompress(data: bytes | str | os.PathLike, model: ModelLike | None = None, *,
               max_pixels: int | None = None, tile: int | None = None) -> Image.Image:
    """Decompress a ``.slc`` file (its bytes, or its path) to a PIL image.

    Without ``model``, the registered pretrained model whose fingerprint the file carries.
    A file declaring more than ``max_pixels`` pixels is refused before decoding; ``tile``
    is the synthesis's tile size, as :func:`compress`'s.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        data = Path(data).read_bytes()
    data = bytes(data)
    return codec_for(writer_of(data) if model is None else model, max_pixels,
                     tile).decode(data)
