"""What a decoder checks before it trusts a file's header, and an image's size before
coding it: one set of rules for the PyTorch codec and the edge runtime, so that both refuse
the same files with the same typed errors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from slimcodec.errors import (
    CorruptBitstreamError,
    ImageError,
    LatentError,
    ModelMismatchError,
    ResourceLimitError,
)

from .container import MAX_IMAGE_SIDE, Header, RateKind

__all__ = ["check_header", "check_image_size", "check_latent"]


def check_image_size(height: int, width: int, max_pixels: int) -> None:
    """Raise ``ImageError`` for a side outside 1..MAX_IMAGE_SIDE, ``ResourceLimitError``
    for more than ``max_pixels`` pixels."""
    if not (0 < height <= MAX_IMAGE_SIDE and 0 < width <= MAX_IMAGE_SIDE):
        raise ImageError(
            f"image is {width}x{height}; each side must be 1..{MAX_IMAGE_SIDE} pixels")
    ResourceLimitError.check_pixels(width, height, max_pixels)


def check_header(header: Header, *, name: str, fingerprint: bytes, widths: Sequence[int],
                 lambda_bounds: tuple[float, float] | None, domains: Mapping[int, str],
                 max_pixels: int, writer: str = "another model",
                 missing_domain: str = "", mixtures: bool = True) -> None:
    """Raise unless the model ``name`` can decode a file with ``header``.

    ``lambda_bounds``: the model's λ range, None for a single-rate model. ``domains``: the
    domain ids the decoder holds adapters for, with their names. ``writer`` names the model
    whose fingerprint the file carries, for the mismatch message; ``missing_domain`` ends
    the message for a domain the decoder lacks (what to do about it). ``mixtures``: whether
    the decoder can apply a mixture of domain adapters.
    """
    if header.fingerprint != fingerprint:
        raise ModelMismatchError(
            f"file was written by {writer} (fingerprint {header.fingerprint.hex()}), "
            f"not by {name} (fingerprint {fingerprint.hex()})")
    if header.width not in widths:
        raise CorruptBitstreamError(f"corrupt slimcodec file: no width {header.width}")
    if lambda_bounds is not None:
        # The file holds λ as float32: compare against the bounds as float32 rounds them.
        lo, hi = (float(np.float32(b)) for b in lambda_bounds)
        if header.rate_kind != RateKind.LAMBDA or not lo <= header.rate <= hi:
            raise CorruptBitstreamError(
                f"corrupt slimcodec file: {name} needs a λ in [{lo:g}, {hi:g}]")
    elif header.rate_kind != RateKind.NONE:
        raise ModelMismatchError(f"{name} is single-rate; file has a rate setting")
    if header.mixture and not mixtures:
        ids = ", ".join(str(d) for d, _ in header.mixture)
        raise ModelMismatchError(
            f"file mixes the adapters of domain ids {ids} (slimcodec compress --domain mix); "
            f"{name} decodes files of one domain")
    for domain in {header.domain, *(d for d, _ in header.mixture)} - {0}:
        if domain not in domains:
            held = ", ".join(f"{d} ({n})" for d, n in sorted(domains.items()))
            raise ModelMismatchError(
                f"file was coded with the adapter of domain id {domain}, which {name} "
                f"does not hold (it holds: {held or 'none'}){missing_domain}")
    # what the transforms make: the image's own size, or a coded size at least as large
    # on each side (Header checks it), so one check bounds both
    check_image_size(*header.coded, max_pixels)


def check_latent(y_hat: object, header: Header, factor: int) -> None:
    """Raise ``LatentError`` unless ``y_hat`` is the float latent a file with ``header``
    decodes to: a numpy ``(width, ceil(H / factor), ceil(W / factor))`` array, ``factor``
    the model's downsampling. A latent of another shape would be synthesized into an image
    of the wrong size or fail deep inside the transform."""
    height, width = header.coded
    expected = (header.width, -(-height // factor), -(-width // factor))
    if not isinstance(y_hat, np.ndarray) or not np.issubdtype(y_hat.dtype, np.floating):
        raise LatentError(f"a latent must be a float numpy array of shape {expected} "
                          f"(decode_latent's), not {type(y_hat).__name__}")
    if y_hat.shape != expected:
        raise LatentError(f"latent of shape {y_hat.shape} for a {header.width}-channel "
                          f"{width}x{height} file, which decodes to {expected}")
