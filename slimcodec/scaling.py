"""Coding an image at a higher resolution than its own (``scale``), shared by both runtimes.

A model's latent holds ``width`` values per 16×16 pixels, and that caps its quality at any
rate: near 35.4 dB on photos and 27 dB on screens for the default (its transforms'
ceiling, ``benchmarks/latent_capacity.py``). Coding the image upsampled by ``s`` gives the
transforms ``s²`` times the latent values per pixel of the original, for ``s²`` times
their work: the encoder upsamples the image and codes that, the file's header records the
size it coded (:attr:`~slimcodec.bitstream.Header.coded_size`) beside the image's and the
filter, and every decoder synthesizes the coded size and resamples it to the image's with
that filter (Pillow's, on 8-bit pixels, so both runtimes resample alike); the encoder's
upsampling is corrected so that this resizing gives the image back (:func:`upsample`).
The rate counts the original's pixels. Two filters
(:data:`~slimcodec.bitstream.container.RESAMPLING`): ``lanczos`` (up and down), and
``box``, nearest-neighbour up and area-average down, which undoes an integer scale's
upsampling exactly and keeps text's edges.
``benchmarks/resampled_coding.py`` measures what each scale buys and costs (section
``resampled-coding-slimcae-hpc``).

**Choosing the scale** (``scale="auto"``, what ``slimcodec compress`` does unless told a
scale). Which scale codes an image best depends on λ and on the image: at low rates the
image's own size wins, at high rates an upsampled one (photos with Lanczos, text with
``box``). :func:`choose_scale` codes a *probe* of the image, a 2×2 mosaic of
:data:`PROBE_TILE`-pixel tiles from across it, at each of :data:`CANDIDATES` (scale and
filter), from the smallest scale, stopping at the first scale that lowers no loss (a
filter goes on to a larger scale only where it leads, and no scale is tried at which the
image would be coded beyond the pixel limit), and keeps the one whose file has the lowest
RD loss (:func:`~slimcodec.bitstream.rate.rd_loss`,
the loss the gate between adapters uses) on the probe at the λ asked for; the image is
then coded once at that scale. A candidate at scale ``s`` is coded at λ/s²
(:func:`coding_lambda`): a model's λ weighs bits per coded pixel, and at λ/s² every scale
trades rate for distortion per pixel of the image alike, so that the choice follows the
envelope of the scales' curves (the file's header holds the λ it was coded at). An image
no larger than the mosaic is its own probe, and the best candidate's file is the one
returned. The probe is a sixth of a 768×512 image's
pixels, less of a larger one's.

**With the gate** (``domain="auto"``, the shipped models' default), the scale is chosen
with the model alone, then the domain by the gate on the probe at that scale and at the
image's own size, and the image is coded once with the pair of the lower loss
(:func:`gate_auto`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from itertools import takewhile
from typing import Any

import numpy as np
from PIL import Image

from slimcodec.bitstream.checks import check_image_size
from slimcodec.bitstream.container import (
    MAX_CODING_SCALE,
    MAX_IMAGE_SIDE,
    RESAMPLING,
    Bitstream,
    Header,
    pack,
    unpack,
)
from slimcodec.bitstream.rate import per_image_pixel, rd_loss
from slimcodec.errors import ResourceLimitError
from slimcodec.gating import SOURCE
from slimcodec.palette import palette_loss
from slimcodec.utils.metrics import psnr

__all__ = [
    "AUTO",
    "BACK_PROJECTIONS",
    "CANDIDATES",
    "FILTERS",
    "PROBE_TILE",
    "Scale",
    "at_lambda",
    "candidate_name",
    "check_auto_filter",
    "check_scale",
    "choose_scale",
    "coded_size",
    "coding_lambda",
    "encode_at_scale",
    "encode_scaled",
    "fits",
    "fixed_scale",
    "gate_auto",
    "parse_scale",
    "per_image_pixel",
    "probe_of",
    "resample",
    "to_image_size",
    "upsample",
]

#: A coding scale: a factor (1 to :data:`~slimcodec.bitstream.container.MAX_CODING_SCALE`)
#: or :data:`AUTO`.
Scale = float | str
#: The scale that has the encoder choose, per image, among :data:`CANDIDATES`.
AUTO = "auto"
#: What :data:`AUTO` chooses among, (scale, filter), the cheapest first: the image's own
#: size, and the upsamplings ``benchmarks/resampled_coding.py`` found to pay at some rate
#: (Lanczos for photos, ``box`` for text; ×3 ``box`` lifts screens' top quality above 35 dB).
CANDIDATES = ((1.0, "lanczos"), (1.5, "lanczos"), (2.0, "lanczos"), (2.0, "box"),
              (3.0, "box"))
#: The side, in pixels, of each of the four tiles of :func:`probe_of`'s mosaic.
PROBE_TILE = 128

#: Each filter of the container's :data:`RESAMPLING`: Pillow's filter for the encoder's
#: upsampling, and for the decoder's resizing to the image's size.
FILTERS = {"lanczos": (Image.LANCZOS, Image.LANCZOS), "box": (Image.NEAREST, Image.BOX)}
assert tuple(FILTERS) == RESAMPLING
#: Back-projection steps of :func:`upsample` per filter: Lanczos down undoes Lanczos up only
#: to about 48 dB on the held-out photos at ×1.5 and ×2, 40 on the worst (a ceiling on what
#: a file coded upsampled decodes to); three steps take that to 59–65 dB, 54–56 on the
#: worst (section ``resampled-coding-slimcae-hpc-back-projection``); ``box`` averaging
#: undoes nearest-neighbour exactly.
BACK_PROJECTIONS = {"lanczos": 3, "box": 0}


def check_scale(scale: Scale) -> None:
    """Raise ``ValueError`` unless ``scale`` is :data:`AUTO` or 1 to
    :data:`~slimcodec.bitstream.container.MAX_CODING_SCALE` (the command lines call it
    before any work)."""
    if scale == AUTO:
        return
    if isinstance(scale, str):
        raise ValueError(f"scale {scale!r} is neither {AUTO!r} nor a number")
    if not 1 <= scale <= MAX_CODING_SCALE:
        raise ValueError(f"scale {scale:g} is outside 1..{MAX_CODING_SCALE}")


def check_auto_filter(scale: Scale, resampling: str) -> None:
    """Raise ``ValueError`` where a filter other than the default is given with
    :data:`AUTO`, which chooses the filter too."""
    if scale == AUTO and resampling != "lanczos":
        raise ValueError(f"scale {AUTO!r} chooses the filter too: give a scale (--scale) "
                         f"to code with resampling {resampling!r}")


def fixed_scale(scale: Scale) -> float:
    """What a budget codes at (a latency, MAC or memory cap, whose width is chosen for one
    coded size before any coding): ``scale`` where it is a factor, and for :data:`AUTO` the
    image's own size, 1, the cheapest."""
    return 1.0 if scale == AUTO else float(scale)


def parse_scale(text: str) -> Scale:
    """A ``--scale`` argument as the command lines take it: :data:`AUTO`, or a number (its
    range is :func:`check_scale`'s, checked before the work)."""
    if text == AUTO:
        return AUTO
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"scale {text!r} is neither {AUTO!r} nor a number") from None


def coded_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """The size an image of ``height × width`` is coded at for ``scale`` (1 to
    :data:`~slimcodec.bitstream.container.MAX_CODING_SCALE`): each side times the scale,
    rounded. Raises ``ValueError`` for a scale out of range (or :data:`AUTO`, which has no
    size until it chooses), and :class:`~slimcodec.errors.ResourceLimitError` for a side a
    container cannot hold."""
    if scale == AUTO:
        raise ValueError(f"scale {AUTO!r} has no coded size until the encoder chooses one")
    check_scale(scale)
    size = (round(height * scale), round(width * scale))
    if max(size) > MAX_IMAGE_SIDE:
        raise ResourceLimitError(f"a {width}x{height} image at scale {scale:g} would be coded "
                                 f"at {size[1]}x{size[0]}, beyond {MAX_IMAGE_SIDE} pixels a side")
    return size


def fits(height: int, width: int, scale: float, max_pixels: int) -> bool:
    """Whether an image of ``height × width`` can be coded at ``scale`` under
    ``max_pixels`` (and a container's side): what :data:`AUTO` tries, so that the scale it
    chooses always codes."""
    try:
        check_image_size(*coded_size(height, width, scale), max_pixels)
    except ResourceLimitError:
        return False
    return True


def resample(rgb: np.ndarray, size: tuple[int, int], method: int) -> np.ndarray:
    """``rgb`` (uint8, ``(H, W, 3)``) resized to ``size`` = (height, width) with Pillow's
    filter ``method``."""
    if rgb.shape[:2] == tuple(size):
        return rgb
    return np.asarray(Image.fromarray(rgb, "RGB").resize((size[1], size[0]), method))


def upsample(rgb: np.ndarray, size: tuple[int, int], resampling: str,
             steps: int | None = None) -> np.ndarray:
    """``rgb`` (uint8) upsampled to ``size`` for coding with the filter ``resampling``: the
    image whose resizing back to ``rgb``'s size, as every decoder does it
    (:func:`to_image_size`), is ``rgb``, or as near as 8-bit pixels allow.

    Lanczos down after Lanczos up is a low-pass filter, not the identity, so a file coded
    from the plain upsampling decodes at best to that filter's output (48 dB on average on
    the held-out photos at ×2, 40 on the worst), short of what the transforms reach there.
    Iterative back-projection (Irani and Peleg, "Improving resolution by image
    registration", CVGIP 1991) corrects the upsampled image by the upsampled error of its
    downsampling, :math:`u_{k+1} = u_k + U(x - D(u_k))` from :math:`u_0 = U(x)`, for
    :data:`BACK_PROJECTIONS` steps (or ``steps``). ``D`` is the decoder's own 8-bit
    resizing, so the error corrected is the one a decoder makes (each step's error is
    carried in 8 bits about 128; after the first step it is a few levels). The decoder is
    unchanged, so this is the encoder's affair, as the format spec says; both runtimes'
    encoders call it."""
    up, down = FILTERS[resampling]
    steps = BACK_PROJECTIONS[resampling] if steps is None else steps
    upsampled = resample(rgb, size, up)
    if not steps or rgb.shape[:2] == tuple(size):
        return upsampled
    # In place and by bands of rows: the upsampled image is the large one (a 12 MP image
    # at ×2 is 48 MP), so its int16 sum and 8-bit copies are the only full-size arrays.
    u = upsampled.astype(np.int16)
    del upsampled
    target = rgb.astype(np.int16)
    for _ in range(steps):
        error = target - resample(_clipped(u), rgb.shape[:2], down)
        np.add(error, 128, out=error)
        carried = np.clip(error, 0, 255).astype(np.uint8)
        u += resample(carried, size, up)
        u -= 128
    return _clipped(u)


def _clipped(values: np.ndarray, rows: int = 256) -> np.ndarray:
    """``values`` (int16) clipped to 8 bits, a band of ``rows`` at a time (no full-size
    temporary)."""
    out = np.empty(values.shape, np.uint8)
    for top in range(0, values.shape[0], rows):
        out[top:top + rows] = np.clip(values[top:top + rows], 0, 255)
    return out


def to_image_size(rgb: np.ndarray, header: Header) -> np.ndarray:
    """What a decoder returns of the ``rgb`` it synthesized for ``header``: resampled to
    the image's size with the file's filter where it was coded at another size."""
    if header.coded_size is None:
        return rgb
    return resample(rgb, header.image_size, FILTERS[RESAMPLING[header.resampling]][1])


def encode_at_scale(encode: Callable[[np.ndarray], bytes],
                    decode: Callable[[bytes], tuple[np.ndarray, Header]], rgb: np.ndarray,
                    scale: float, max_pixels: int,
                    report: dict[str, Any] | None = None, resampling: str = "lanczos",
                    back_projections: int | None = None) -> bytes:
    """``encode`` (a codec's encoder, at scale 1) run on ``rgb`` upsampled by ``scale``
    with the filter ``resampling`` (one of :data:`FILTERS`; :func:`upsample`, with
    ``back_projections`` steps where given), its file's header then saying
    the image's size, the size it coded and the filter. ``report``:
    what ``encode`` reported, the PSNRs in it (the gate's ``psnr``, refinement's
    ``psnr_predicted``: of the coded image) measured again against ``rgb`` after
    ``decode``, which resamples as every decoder does. ValueError where ``encode`` sent
    exact blocks (:mod:`slimcodec.index_map`): they are the upsampled image's, and the
    encoder chooses them for the file as sent."""
    if resampling not in FILTERS:
        raise ValueError(f"resampling {resampling!r} is not one of {', '.join(FILTERS)}")
    height, width = rgb.shape[:2]
    size = coded_size(height, width, scale)
    check_image_size(*size, max_pixels)
    data = encode(upsample(rgb, size, resampling, back_projections))
    if size == (height, width):  # a scale too small to change a side
        return data
    bitstream = unpack(data)
    if bitstream.header.index_map:  # its blocks are the upsampled image's, not rgb's
        raise ValueError("encode_at_scale needs an encoder without the palette: its exact "
                         "blocks are chosen for the file as sent (palette.with_palette)")
    header = replace(bitstream.header, image_size=(height, width), coded_size=size,
                     resampling=RESAMPLING.index(resampling))
    data = pack(Bitstream(header, bitstream.strings))
    measured = [k for k in ("psnr", "psnr_predicted") if k in (report or {})]
    if measured:
        quality = psnr(rgb, decode(data)[0])
        report.update(dict.fromkeys(measured, quality))  # type: ignore[union-attr]
    return data


def candidate_name(scale: float, resampling: str) -> str:
    """A candidate's name in :func:`choose_scale`'s losses (``"1.5"``, ``"2:box"``)."""
    return f"{scale:g}" + ("" if resampling == "lanczos" else f":{resampling}")


def probe_of(rgb: np.ndarray, tile: int = PROBE_TILE) -> np.ndarray | None:
    """The part of ``rgb`` :func:`choose_scale` codes: ``tile``-pixel squares centred on
    the quarter points of its height and width (on the 16-pixel grid), as one 2×2 mosaic;
    along a side shorter than two tiles, the whole side (a strip's probe is 1×2 tiles of
    its height). None where that would be the whole image: it is its own probe."""
    height, width = rgb.shape[:2]

    def spans(side: int) -> list[tuple[int, int]]:  # (start, length) along one side
        if side < 2 * tile:
            return [(0, side)]
        return [(round(side * f - tile / 2) // 16 * 16, tile) for f in (0.25, 0.75)]

    rows, cols = spans(height), spans(width)
    if sum(n for _, n in rows) * sum(n for _, n in cols) >= height * width:
        return None
    return np.concatenate([np.concatenate([rgb[r:r + h, c:c + w] for c, w in cols], axis=1)
                           for r, h in rows], axis=0)


def coding_lambda(weight: float, scale: float, lowest: float) -> float:
    """The λ :data:`AUTO` codes a candidate at ``scale`` with, for the RD ``weight`` (the
    λ asked for): ``weight / scale²``, not below the width's ``lowest``. A model's λ weighs its
    distortion against its bits per *coded* pixel, ``scale²`` of them per pixel of the
    image: at the file's own λ an upsampled candidate spends as if its bits were ``scale²``
    times cheaper, and against the image's own size it loses the comparison at the weight
    where its point at ``weight / scale²`` would win it (so ``auto`` stayed at ×1 near its
    ceiling, below the envelope of the scales). At ``weight / scale²`` every candidate
    trades rate for distortion per pixel of the image alike."""
    return max(weight / scale**2, lowest)


def at_lambda(encode: Callable[..., bytes], weight: float, scale: float,
              lowest: float | None) -> Callable[..., bytes]:
    """``encode`` (whose keyword ``lmbda`` defaults to the λ asked for) coding a candidate at
    ``scale`` at :func:`coding_lambda`; as it is for a single-rate codec (``lowest`` None:
    one rate, at every scale)."""
    if lowest is None:
        return encode
    return partial(encode, lmbda=coding_lambda(weight, scale, lowest))


def choose_scale(encode: Callable[..., bytes],
                 decode: Callable[[bytes], tuple[np.ndarray, Header]], rgb: np.ndarray,
                 weight: float, max_pixels: int, lowest: float | None,
                 measured: dict[str, tuple[float, float]] | None = None,
                 colours: np.ndarray | None = None
                 ) -> tuple[tuple[float, str], bytes | None, dict[str, float]]:
    """The candidate of :data:`CANDIDATES` (scale, filter) whose file of ``rgb``'s probe
    (:func:`probe_of`) has the lowest RD loss at ``weight`` (the λ asked for); the first
    of the lowest. Each candidate is coded at :func:`coding_lambda` (``lowest``: the
    width's lowest λ; None, a single-rate codec: at its one rate), as the image then is.
    The scales are tried from the smallest, and the search stops at the first
    scale none of whose filters lowers the loss: at low rates, where the image's own size
    wins, the larger scales' work (4× and more) is spared. A filter tried at a smaller
    scale is tried at a larger one only where it leads (×3 ``box`` only after ×2 ``box``
    won: text, not photos); where a scale has two filters and the image fits the next
    scale, they are compared for that on the plain Lanczos upsampling too, without
    :func:`upsample`'s back-projection, as the rule was measured (back-projected, ×2
    Lanczos edges out ×2 ``box`` on text's probe, and text would lose ×3 ``box``). A
    candidate at which the image itself would be coded beyond ``max_pixels`` (or a
    container's side) is not tried: the chosen scale always codes. ``encode`` codes at
    scale 1, as :func:`encode_at_scale`'s, at its keyword ``lmbda``. Also returns the chosen
    candidate's file where ``rgb`` is its own probe (else None), and each candidate's
    loss by name (``"2:box"``), of those tried; ``measured`` receives each one's (bpp,
    PSNR) on the probe, by the same names. ``colours``: the image's colours to try a
    palette with (:func:`~slimcodec.palette.colours_to_try`), where the encoder sends one:
    each candidate's loss is then its file's with the palette of the lowest loss, or none
    (:func:`~slimcodec.palette.palette_loss`; on screens a palette favours ``box``, whose
    edges it snaps back, and smaller scales)."""
    probe = probe_of(rgb)
    sample = rgb if probe is None else probe
    losses: dict[str, float] = {}
    leading: dict[str, float] = {}  # the losses a filter's lead is judged on
    files: dict[str, tuple[tuple[float, str], bytes]] = {}
    seen: set[str] = set()  # the filters of the smaller scales' candidates

    def coded(scale: float, resampling: str, steps: int | None) -> tuple[bytes, float]:
        data = encode_at_scale(at_lambda(encode, weight, scale, lowest), decode, sample,
                               scale, max_pixels, None, resampling, steps)
        decoded = decode(data)[0]
        if measured is not None and steps is None:
            measured[candidate_name(scale, resampling)] = (
                8 * len(data) / (sample.shape[0] * sample.shape[1]), psnr(sample, decoded))
        if colours is None:
            return data, rd_loss(sample, decoded, len(data), weight)
        return data, palette_loss(sample, decoded, len(data), weight, colours)

    # the scales tried: up to the first at which the image would be refused
    scales = list(takewhile(lambda s: fits(*rgb.shape[:2], s, max_pixels),
                            dict.fromkeys(s for s, _ in CANDIDATES)))
    for i, scale in enumerate(scales):
        judged = i + 1 < len(scales)  # a filter's lead is judged for the next scale alone
        lowered = False
        leader = files[min(leading, key=leading.__getitem__)][0][1] if leading else None
        filters = [f for s, f in CANDIDATES if s == scale]
        for resampling in (f for f in filters if f not in seen or f == leader):
            name = candidate_name(scale, resampling)
            data, losses[name] = coded(scale, resampling, None)
            plain = losses[name]
            if judged and len(filters) > 1 and BACK_PROJECTIONS[resampling]:  # beside box:
                plain = coded(scale, resampling, 0)[1]  # the rule's comparison, plainly
            leading[name] = plain
            files[name] = (scale, resampling), data
            lowered |= losses[name] == min(losses.values())
        seen.update(filters)
        if not lowered:
            break
    if not losses:
        raise ResourceLimitError(f"a {rgb.shape[1]}x{rgb.shape[0]} image is too large to code")
    best = min(losses, key=losses.__getitem__)
    chosen, data = files[best]
    return chosen, data if probe is None else None, losses


def encode_scaled(encode: Callable[..., bytes],
                  decode: Callable[[bytes], tuple[np.ndarray, Header]], rgb: np.ndarray,
                  scale: Scale, max_pixels: int, report: dict[str, Any] | None = None,
                  resampling: str = "lanczos",
                  probe_encode: Callable[..., bytes] | None = None,
                  weight: Callable[[], float | None] | None = None,
                  lowest: float | None = None, colours: np.ndarray | None = None) -> bytes:
    """:func:`encode_at_scale` at ``scale``; for :data:`AUTO`, at the scale and filter
    :func:`choose_scale` chooses, the probe coded by ``probe_encode`` (default ``encode``:
    a caller that refines latents probes without) at the RD ``weight()``, and the image at
    the chosen scale's :func:`coding_lambda` (``lowest``: the width's lowest λ, None for a
    single-rate codec). ``encode`` and ``probe_encode`` code at scale 1, at their keyword
    ``lmbda`` (default: the λ asked for); ``colours`` as :func:`choose_scale`'s. Where a
    codec has
    no weight (a single-rate model whose training λ is unknown), :data:`AUTO` codes at
    scale 1. ``report`` receives the scale and filter chosen (``scale``, ``resampling``)
    and each candidate's loss (``scale_losses``)."""
    if scale != AUTO:
        return encode_at_scale(encode, decode, rgb, scale, max_pixels, report, resampling)
    check_auto_filter(scale, resampling)
    rd_weight = weight() if weight is not None else None
    if rd_weight is None:
        if report is not None:
            report.update({"scale": 1.0, "resampling": "lanczos", "scale_losses": {}})
        return encode_at_scale(encode, decode, rgb, 1.0, max_pixels, report)
    (chosen, filter_), data, losses = choose_scale(probe_encode or encode, decode, rgb,
                                                   rd_weight, max_pixels, lowest,
                                                   colours=colours)
    if data is None or probe_encode is not None or report is not None:
        # the image itself at the chosen scale (a probe coded its own file, but not with
        # what this encode adds: refinement, a report)
        data = encode_at_scale(at_lambda(encode, rd_weight, chosen, lowest), decode, rgb,
                               chosen, max_pixels, report, filter_)
    if report is not None:
        report.update({"scale": chosen, "resampling": filter_, "scale_losses": losses})
    return data


def gate_auto(plain: Callable[..., bytes],
              gate: Callable[..., bytes],
              settled: Callable[..., bytes],
              decode: Callable[[bytes], tuple[np.ndarray, Header]], rgb: np.ndarray,
              weight: float | None, max_pixels: int, report: dict[str, Any] | None,
              lowest: float | None = None, colours: np.ndarray | None = None) -> bytes:
    """:data:`AUTO` with the gate ``auto``: the scale and filter that :func:`choose_scale`
    chooses with the model alone (``plain`` codes at scale 1), then the domain that the gate
    chooses on the probe at that scale (``gate(image, scale, filter, report)``: each
    candidate's loss, ``gate``, measured on the image's own pixels, and the domain kept,
    ``domain``, None for the model alone), or at the image's own size where the gate's
    lowest loss there is lower (an adapter can make scale 1 win where the model alone
    needed an upsampling: screens at low rates), and ``settled(domain, scale, filter)``,
    the image coded once with both. The gate's syntheses thus run on the probe alone,
    instead of on every candidate of the scale and again on the whole image. ``report``
    receives the probe's ``gate`` and ``domain`` beside :func:`encode_scaled`'s keys and
    what ``settled`` reports. Each call codes at a scale's :func:`coding_lambda` (keyword
    ``lmbda``; ``lowest`` and ``colours`` as :func:`choose_scale`'s). Without an RD
    ``weight``, the gate codes the image at scale 1 (and says why it cannot weigh either)."""
    if weight is None:
        return gate(rgb, 1.0, "lanczos", report)

    def at_scale(call: Callable[..., bytes], scale: float) -> Callable[..., bytes]:
        return at_lambda(call, weight, scale, lowest)

    (scale, filter_), _, losses = choose_scale(plain, decode, rgb, weight, max_pixels, lowest,
                                               colours=colours)
    probe = probe_of(rgb)
    sample = rgb if probe is None else probe
    gated: dict[str, Any] = {}
    at_scale(gate, scale)(sample, scale, filter_, gated)
    if scale != 1:  # an adapter may code the image's own size better than any upsampling
        own: dict[str, Any] = {}
        at_scale(gate, 1.0)(sample, 1.0, "lanczos", own)
        if min(own["gate"].values()) < min(gated["gate"].values()):
            (scale, filter_), gated = (1.0, "lanczos"), own
    data = at_scale(settled, scale)(gated["domain"] or SOURCE, scale, filter_)
    if report is not None:
        report.update({"domain": gated["domain"], "gate": gated["gate"], "scale": scale,
                       "resampling": filter_, "scale_losses": losses})
    return data
