"""Typed errors. Everything slimcodec raises on bad input derives from :class:`SlimcodecError`,
so that callers (and the CLI, which turns them into one line and exit status 2) can catch
exactly the failures that are the input's fault."""

from __future__ import annotations

__all__ = [
    "BitstreamError",
    "BundleError",
    "CorruptBitstreamError",
    "ImageError",
    "LatentError",
    "LossyConversionWarning",
    "ModelFileError",
    "ModelMismatchError",
    "NotASlimcodecFileError",
    "RateError",
    "ResourceLimitError",
    "RetiredModelError",
    "SlimcodecError",
    "StaleBundleWarning",
    "TruncatedBitstreamError",
    "UnknownModelError",
    "UnsupportedVersionError",
    "UntrainedModelError",
    "WidthError",
]


class SlimcodecError(Exception):
    """Base class of the errors caused by bad input (files, images, model names)."""


class BitstreamError(SlimcodecError, ValueError):
    """The bytes are not a valid slimcodec container."""


class NotASlimcodecFileError(BitstreamError):
    """The data does not start with the slimcodec magic bytes."""


class UnsupportedVersionError(BitstreamError):
    """The container's format version is not one this slimcodec reads."""


class TruncatedBitstreamError(BitstreamError):
    """The container ends before the lengths in its header say it should."""


class CorruptBitstreamError(BitstreamError):
    """The container's checksum or fields are inconsistent."""


class ModelMismatchError(SlimcodecError):
    """The file was written by a different model than the one asked to decode it."""


class UnknownModelError(SlimcodecError, LookupError):
    """No registered model or checkpoint file goes by that name."""


class RetiredModelError(UnknownModelError):
    """The file was written by a model retired from the package; names it and the last
    release that decodes its files."""


class UntrainedModelError(SlimcodecError):
    """A model whose entropy models were never trained (``create_model(name)`` without
    ``pretrained=True``): its files would be noise."""


class WidthError(SlimcodecError, ValueError):
    """A width the model does not have; names those it has."""


class ImageError(SlimcodecError, ValueError):
    """An input image that cannot be read or converted."""


class LatentError(SlimcodecError, ValueError):
    """A latent handed to ``synthesize_rgb`` that is not the shape its header makes: not a
    float ``(width, H/16, W/16)`` array (names both shapes)."""


class LossyConversionWarning(UserWarning):
    """An input image carries what the codec cannot code (transparency, more than 8 bits,
    further frames): it is converted, and the warning says what was lost."""


class StaleBundleWarning(UserWarning):
    """A bundle an older slimcodec exported that still loads and decodes, but with a known
    fault that exporting it again removes: the warning names the fault and its cost."""


class ModelFileError(SlimcodecError):
    """A model file that cannot be loaded: not a slimcodec checkpoint, or damaged."""


class ResourceLimitError(SlimcodecError):
    """An image over the configured pixel limit, or memory exhausted while coding it."""

    @staticmethod
    def check_pixels(width: int, height: int, max_pixels: int | None) -> None:
        """Raise for a ``width x height`` image over ``max_pixels`` (None: no limit). One
        place for the check, so that an image file and a bitstream are refused alike."""
        if max_pixels is not None and width * height > max_pixels:
            raise ResourceLimitError(
                f"image is {width}x{height} = {width * height} pixels, over the limit of "
                f"{max_pixels} (raise it with --max-pixels / max_pixels)")


def check_positive(**settings: int | None) -> None:
    """Raise ``ValueError`` naming the first of ``settings`` (None: not set) below 1: a
    codec's ``max_pixels`` and ``tile``, in the torch codec, the edge one and the API alike."""
    for name, value in settings.items():
        if value is not None and value < 1:
            raise ValueError(f"{name} must be positive, not {value}")


class RateError(SlimcodecError, ValueError):
    """A rate setting (λ, quality, target) the model cannot honour; names the valid range."""


class BundleError(SlimcodecError):
    """A deployment bundle that is missing, damaged, or not the one a file needs."""
