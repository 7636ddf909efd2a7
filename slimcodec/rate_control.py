r"""Rate control for variable-rate models: quality settings and bpp / PSNR targets.

**Quality.** ``--quality Q`` (1-100, as JPEG and WebP users know it) maps onto the width's
trained λ range linearly in log λ:

.. math::

    \log\lambda(Q) = \log\lambda_{lo} + \frac{Q - 1}{99}\,(\log\lambda_{hi} - \log\lambda_{lo}),

so Q = 1 is the width's lowest rate and Q = 100 its highest; the map is monotone, and the
rate with it (``tests/test_variable_rate.py``).

**Targets.** ``--target-bpp`` and ``--target-psnr`` search λ for the image at hand: bpp and
PSNR both rise with λ, near-linearly in (log λ, log bpp). The search codes the top of the
width's range first, steps down by the secant through the passes so far (the first step
along a typical slope, :data:`PRIOR_SLOPE`; no step more than :data:`GROWTH` times the one
before) until a pass lands below the target, and then narrows that bracket by regula falsi
(Illinois). So the range's bottom is coded only where a step would pass it, or where the
passes run out before a pass lands below the target: a target below the width's reach is
always found out. (Before 0.6.0 it coded both ends first; ``docs/rate_control.md`` compares
the two.) Every pass is one real encode (bpp counts the whole container); PSNR targets also
decode. The search stops within ``tolerance`` of the target or after ``max_passes`` passes
per width, and keeps the pass nearest the target.

Unless a width is given, the search also picks the width. By default (``prefer="quality"``)
widths are tried widest first, so the target is met by the widest width that reaches it:
at the same rate a wider width codes at least as well over their common range (on the
12 held-out photos of the ``hyperprior-slimcae-hp`` section of ``benchmarks/RESULTS.md``,
0.3 bpp is 33.6 dB at width 192 and 32.9 dB at width 96, the narrowest that reaches it,
interpolated in log rate). ``prefer="cost"`` tries them narrowest first: the cheapest width
that reaches the target, for a device that must save time. A width whose range does not
reach the target costs one or two passes to find out; where the width tried before it lay
wholly above the target, a width is searched from its range's bottom up, so one pass
refuses it if it does too. A target no width reaches raises
:class:`RateError` naming the range that can be reached on that image. With
``scale="auto"`` (``slimcodec compress``'s default) the search runs at the image's own size,
and at a larger scale of :data:`~slimcodec.scaling.CANDIDATES` (×1.5, ×2, then ``box`` at
×2 and ×3) only where no width reaches the target there. The first that reaches it is not
always the best at it: at the λ found, the encoder's probe
(:func:`~slimcodec.scaling.choose_scale`) may prefer a larger scale, and there the target is
searched again at the same width, the better of the two files kept (a higher PSNR at the
target rate, fewer bytes at the target PSNR). That search starts below the λ found, whose
rate (or PSNR) at the larger scale it predicts from the probe's two files instead of coding
it: one pass at the larger scale's pixels saved.

**One entry point for every rate setting.** :func:`encode_with_rate` takes one of ``lmbda``,
``quality``, ``target_bpp``, ``target_size`` (bytes of the whole file) and ``target_psnr``,
and codes with any codec that has this module's few methods (:class:`RateCodec`): the
PyTorch :class:`~slimcodec.codec.Codec` and the torch-free
:class:`~slimcodec_edge.edge.runtime.EdgeCodec` run the same search, as ``slimcodec compress`` and
``slimcodec-edge encode`` share their options (:func:`add_rate_arguments`). This module
imports numpy alone.

**With refinement or an adapter.** ``refine`` and ``domain`` are passed to every pass
(:meth:`~slimcodec.codec.Codec.encode_rgb`), so the search measures the very file it
returns: refinement lowers the rate at a given λ, and searching plain λ first would miss
the target by that much. Each pass then costs the refinement's steps, and the gate
(``domain="auto"``) entropy decodes every pass once and synthesizes it once per candidate
(the model alone and each loaded adapter), and codes it again for each adapter that does
not code the model's own strings (``"mix"``: decodes it once per
weighting it tries). A PSNR target's pass through the gate ``auto`` takes the kept file's
PSNR from the gate's own decode (its ``report``), not from a decode of its own.

**A gate's rate target** (bpp or size, without refinement) is searched with the model
alone, whose passes skip the gate's syntheses, and the gate then codes once at the λ found.
Its file is returned where it holds the model alone's strings, so the rate the search
measured (the gate kept the model alone or a decoder adapter, which code those strings), and
a gate that writes its weights into the header still meets the tolerance; otherwise (an
adapter with entropy models of its own won) that width is searched through the gate, pass
by pass. The file returned is always one the search coded and measured. Where every loaded
adapter codes the model alone's strings (``gate_keeps_source_strings``: the default model's
do), the gate ``auto``'s files are the model alone's but for their domain field, so a width
the model alone cannot reach is passed over without a pass through the gate. There a PSNR
target is searched so too: the gate keeps the file of the highest PSNR of those strings,
never below the model alone's, so the gate codes once at the λ the model alone found and,
where it kept an adapter above the target, the target is searched on through the gate
from that λ down (that file its first end, not coded again). Unless the gate keeps an
adapter on the image's probe (:func:`~slimcodec.scaling.probe_of`, a sixth of a 768×512
image's pixels) at the top of the first width's range, as it does on screens: then every
pass goes through the gate, as the model alone's would only find a λ to search down from.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from slimcodec.bitstream import Header, RateKind, unpack
from slimcodec.errors import RateError
from slimcodec.gating import GATES, SOURCE
from slimcodec.palette import colours_to_try
from slimcodec.scaling import (
    AUTO,
    CANDIDATES,
    FILTERS,
    Scale,
    candidate_name,
    check_auto_filter,
    choose_scale,
    fits,
    parse_scale,
    probe_of,
)
from slimcodec.utils.metrics import MEAN_PSNR_CEILING, psnr

__all__ = ["PREFER", "RATE_OPTIONS", "RateCodec", "RateSearch", "add_rate_arguments",
           "coded_summary", "encode_to_target", "encode_with_rate", "lambdas_for_eval",
           "quality_to_lambda"]

DEFAULT_TOLERANCE = 0.01  # relative, for bpp; PSNR targets use 0.02 dB
DEFAULT_MAX_PASSES = 10
#: The rate settings, at most one per encode.
RATE_OPTIONS = ("lmbda", "quality", "target_bpp", "target_size", "target_psnr")
#: Which width a target search takes when none is given (see the module docstring).
PREFER = ("quality", "cost")
#: The slope a target search's first step assumes, d axis / d log λ (by ``by_psnr``): the
#: default model's rate grows as λ^0.23 to λ^0.35 at every width (its ``slimcodec eval``
#: points on the held-out photos, section ``hyperprior-slimcae-hpc`` of
#: ``benchmarks/RESULTS.md``), its PSNR by 0.2 to 1.2 dB per e-fold of λ; the secant
#: through the passes measured replaces it from the second step on.
PRIOR_SLOPE = {False: 0.28, True: 0.6}
#: The most each of a target search's steps may grow over the one before it.
GROWTH = 3.0


class RateCodec(Protocol):
    """What rate control needs of a codec (:class:`slimcodec.codec.Codec` and
    :class:`slimcodec_edge.edge.runtime.EdgeCodec` both have it)."""

    name: str
    max_pixels: int

    @property
    def widths(self) -> Sequence[int]: ...

    @property
    def variable_rate(self) -> bool: ...

    @property
    def gate_keeps_source_strings(self) -> bool: ...

    def lambda_range(self, width: int) -> tuple[float, float]: ...

    def resolve_width(self, width: int | None) -> int: ...

    def encode_rgb(self, rgb: np.ndarray, width: int | None = None, grayscale: bool = False,
                   lmbda: float | None = None, *args: Any, **kwargs: Any) -> bytes: ...

    def decode_rgb(self, data: bytes) -> tuple[np.ndarray, Header]: ...


def quality_to_lambda(codec: RateCodec, width: int, quality: float) -> float:
    """λ for a quality setting 1-100 at ``width`` (see the module docstring)."""
    if not 1 <= quality <= 100:
        raise RateError(f"quality {quality:g} is outside 1..100")
    lo, hi = codec.lambda_range(width)
    return math.exp(math.log(lo) + (quality - 1) / 99 * math.log(hi / lo))


@dataclass
class RateSearch:
    """What a target search did: the chosen setting, what it reached and what it cost."""

    width: int
    lmbda: float
    bpp: float
    psnr: float | None
    passes: int
    tried: list[tuple[int, float, float, float | None]] = field(default_factory=list)

    def describe(self) -> str:
        reached = f"{self.bpp:.4f} bpp" + (f", {self.psnr:.2f} dB" if self.psnr else "")
        return (f"width {self.width}, λ {self.lmbda:.6g}: {reached} after {self.passes} "
                f"encoder passes")


def encode_to_target(
    codec: RateCodec,
    rgb: np.ndarray,
    target_bpp: float | None = None,
    target_psnr: float | None = None,
    width: int | None = None,
    grayscale: bool = False,
    tolerance: float | None = None,
    max_passes: int = DEFAULT_MAX_PASSES,
    refine: int = 0,
    domain: str | None = None,
    prefer: str = "quality",
    target_size: int | None = None,
    gate_proxy: bool = True,
    scale: Scale = 1.0,
    resampling: str = "lanczos",
    palette: bool = True,
) -> tuple[bytes, RateSearch]:
    """Encode ``rgb`` at the λ (and width) that reaches ``target_bpp``, ``target_size``
    (the whole file's bytes: searched as the bpp it means for this image, and reported in
    bytes) or ``target_psnr``.

    ``refine`` (latent refinement steps, PyTorch codec only), ``domain`` (an adapter's,
    or ``"auto"``), ``scale`` with ``resampling`` (:mod:`slimcodec.scaling`) and
    ``palette`` (:mod:`slimcodec.palette`: its bytes and snap counted) apply to
    every pass, as in
    :meth:`~slimcodec.codec.Codec.encode_rgb`; the rate and PSNR are the original's.
    ``scale="auto"``: the first of :data:`~slimcodec.scaling.CANDIDATES` (by scale, the
    cheapest first; Lanczos before ``box`` at a scale) that reaches the target (each
    searched as a given scale is, the next only where the target lies above the last one's
    reach; none at which the image would exceed the codec's ``max_pixels``): so text
    reaches the quality of ×3 ``box`` where no smaller scale does. That file is then
    weighed against the candidate the encoder's probe prefers at its λ, where that is a
    larger one (:func:`_better_scale`).
    Without ``width``, ``prefer`` says which width (see the module docstring).
    ``gate_proxy``: search a gate's rate target with the model alone, the gate coding once
    (see the module docstring); False: every pass through the gate.
    """
    if not codec.variable_rate:
        raise RateError(f"{codec.name} is single-rate: targets need a variable-rate model")
    if [target_bpp, target_size, target_psnr].count(None) != 2:
        raise ValueError("give exactly one of target_bpp, target_size and target_psnr")
    pixels = rgb.shape[0] * rgb.shape[1]
    if target_size is not None:
        if not target_size > 0:
            raise RateError(f"target size {target_size} is not a positive number of bytes")
        target_bpp = 8 * target_size / pixels
    target = target_bpp if target_bpp is not None else target_psnr
    assert target is not None
    if not target > 0 or not math.isfinite(target):
        raise RateError(f"target {target} is not a positive number")
    if max_passes < 2:
        raise ValueError("max_passes must be at least 2 (the range's two ends)")
    if prefer not in PREFER:
        raise ValueError(f"prefer must be one of {PREFER}, not {prefer!r}")
    by_psnr = target_psnr is not None
    tol = tolerance if tolerance is not None else (0.02 if by_psnr else DEFAULT_TOLERANCE)
    tried: list[tuple[int, float, float, float | None]] = []
    check_auto_filter(scale, resampling)
    # (scale, filter) in the order tried: the given one, or "auto"'s from the cheapest
    # (those at which the image would exceed the codec's pixel limit left out; scale 1
    # stays, to refuse an image too large at its own size as any encode does)
    scales = ([(s, f) for s, f in CANDIDATES
               if s == 1 or fits(*rgb.shape[:2], s, codec.max_pixels)] if scale == AUTO
              else [(scale, resampling)])
    coding = scales[0]

    def measure(w: int, lmbda: float, how: str | None = domain
                ) -> tuple[bytes, float, float | None]:
        report: dict[str, Any] = {}  # the gate ``auto`` says what its file decodes to
        asked = {"report": report} if by_psnr and how == "auto" else {}
        data = codec.encode_rgb(rgb, w, grayscale, lmbda, domain=how, **asked,
                                **_options(refine, *coding, palette))
        bpp = 8 * len(data) / pixels
        quality = None
        if by_psnr:
            quality = report.get("psnr")
            if quality is None:
                quality = psnr(rgb, codec.decode_rgb(data)[0])
        tried.append((w, unpack(data).header.rate, bpp, quality))
        return data, bpp, quality

    def value(bpp: float, quality: float | None) -> float:
        return quality if by_psnr else bpp  # type: ignore[return-value]

    widths = ([codec.resolve_width(width)] if width is not None else
              sorted(codec.widths, reverse=prefer == "quality"))
    ends: list[float] = []  # every range end measured, for the message when none reaches
    # A gate's pass synthesizes the image once per candidate, but the file it keeps mostly
    # holds the model alone's strings (its decoder adapters code them), whose rate is the
    # model alone's: so a rate target is searched with the model alone and the gate codes
    # once, at the λ found. Where it keeps other strings (an adapter with entropy models of
    # its own) and misses the target, the width is searched through the gate as before.
    # Where the gate is ``auto`` and every adapter codes the model alone's strings, its
    # files are the model alone's byte for byte but for the domain field: a width the model
    # alone cannot reach, the gate cannot either, and costs no pass through it.
    # A PSNR target too, there: of the same strings the gate keeps the file of the lowest
    # RD loss, so the highest PSNR, at least the model alone's at every λ. From the λ the
    # model alone reaches it with, the gate's crossing lies at that λ or below it: the gate
    # codes there once, and where it kept an adapter whose PSNR lies above the target, the
    # target is searched through the gate from there down, that pass its first end.
    keeps = domain == "auto" and codec.gate_keeps_source_strings
    proxy = (SOURCE if gate_proxy and domain in GATES and not refine and (not by_psnr or keeps)
             else None)
    exact = proxy is not None and keeps
    if exact and by_psnr and _gate_keeps_an_adapter(codec, rgb, widths[0], grayscale, scales[0]):
        proxy = None  # (screens: the screen adapter, well above the model alone's PSNR)

    def search(step: tuple[float, str], ws: Sequence[int], below: float | None = None,
               start: float | None = None) -> tuple[bytes, RateSearch] | None:
        """The target searched at one (scale, filter), width by width (λ from ``below``
        down, where given, ``start`` the value predicted there: see :func:`_search`); None
        where none of ``ws`` reaches it there."""
        nonlocal coding, ends, proxy
        coding = step  # what ``measure`` codes at
        for w in ws:
            # Where the last range end measured (the width before's) lies above the target,
            # this width likely does too: its bottom first, one pass to find out. (Not from
            # ``below``, a larger scale's search from the λ a smaller one found, whose
            # end there is predicted: the smaller scale's ends say nothing of its bottom.)
            upward = below is None and bool(ends) and ends[-1] > target
            if proxy is not None:  # (on the model alone first, while that pays)
                reached: list[float] = []
                found = _search(codec, w, target, tol, max_passes, by_psnr,
                                lambda w_, lmbda, how=proxy: measure(w_, lmbda, how), value,
                                reached, below, upward, start)
                # (a PSNR the model alone's top falls short of, an adapter may reach)
                if found is None and exact and (not by_psnr or min(reached) > target):
                    ends += reached
                    continue
                if found is not None:
                    plain, lmbda, _, _, passes = found
                    data, bpp, quality = measure(w, lmbda)
                    if by_psnr:
                        assert quality is not None
                        if _on_target(quality, target, tol, True):
                            return data, RateSearch(w, lmbda, bpp, quality, passes + 1, tried)
                        if quality > target:  # an adapter above it: from λ down, the gate's
                            # and on this image's other widths, every pass through the gate
                            # (screens: the model alone's passes would be spent for nothing)
                            proxy = None
                            gated = _search(codec, w, target, tol, max_passes, by_psnr,
                                            measure, value, ends, lmbda, False, quality)
                            if gated is None:  # above it down to the range's bottom
                                continue
                            data, lmbda, bpp, quality, more = gated
                            return data, RateSearch(w, lmbda, bpp, quality,
                                                    passes + 1 + more, tried)
                    elif unpack(data).strings == unpack(plain).strings and (
                            len(data) == len(plain)
                            or _on_target(bpp, target, tol, False)):
                        return data, RateSearch(w, lmbda, bpp, None, passes + 1, tried)
            found = _search(codec, w, target, tol, max_passes, by_psnr, measure, value, ends,
                            below, upward, start)
            if found is not None:
                data, lmbda, bpp, quality, passes = found
                return data, RateSearch(w, lmbda, bpp, quality, passes, tried)
        return None

    for step in scales:
        if ends and target < min(ends):  # below a smaller scale's reach: so below this one's
            break
        result = search(step, widths)
        if result is not None:
            if scale != AUTO:
                return result
            return _better_scale(codec, rgb, grayscale, result, step, scales, search,
                                 by_psnr, target, tol, palette)
    # In the unit the target was given in: a size target's in bytes.
    unit = "dB" if by_psnr else "bpp" if target_size is None else "bytes"
    shown = ((lambda v: f"{v:.4g}") if target_size is None else
             (lambda v: f"{round(v * pixels / 8)}"))
    where = (f"width {widths[0]}" if width is not None else "the model") + (
        f" up to scale {coding[0]:g}" if scale == AUTO else "")
    if by_psnr and min(ends) == math.inf:  # exact blocks: every file of it lossless
        raise RateError(f"target {target:g} dB is out of reach: {where} decodes this image "
                        "exactly (an infinite PSNR) at every rate tried; give a rate target "
                        "(--target-bpp) instead")
    # Only the end beyond which the target lies may have been measured: say which.
    # Inside the whole span, the target fell beyond an end of every range tried: between two.
    inside = min(ends) <= target <= max(ends)
    reach = (f"at most {shown(max(ends))}" if target > max(ends) else
             f"at least {shown(min(ends))}" if target < min(ends) else
             f"{shown(min(ends))}-{shown(max(ends))}")
    asked = f"{target:g}" if target_size is None else f"{target_size}"
    raise RateError(f"target {asked} {unit} is out of reach: {where} reaches {reach} "
                    f"{unit} on this image" + (", but it falls between the ranges of two of "
                                               "the widths or scales tried" if inside else ""))


def _gate_keeps_an_adapter(codec: RateCodec, rgb: np.ndarray, width: int, grayscale: bool,
                           step: tuple[float, str]) -> bool:
    """Whether the gate ``auto`` keeps an adapter on ``rgb``'s probe
    (:func:`~slimcodec.scaling.probe_of`, or the image where it is its own) at the top of
    ``width``'s range, coded at ``step`` (scale, filter): what a PSNR target's search
    looks at before it searches with the model alone."""
    probe = probe_of(rgb)
    seen: dict[str, Any] = {}
    codec.encode_rgb(rgb if probe is None else probe, width, grayscale,
                     codec.lambda_range(width)[1], domain="auto", report=seen,
                     **_options(0, *step, False))
    return seen.get("domain") is not None


def _better_scale(
    codec: RateCodec,
    rgb: np.ndarray,
    grayscale: bool,
    result: tuple[bytes, RateSearch],
    step: tuple[float, str],
    scales: Sequence[tuple[float, str]],
    search: Callable[[tuple[float, str], Sequence[int], float | None, float | None],
                     tuple[bytes, RateSearch] | None],
    by_psnr: bool,
    target: float,
    tol: float,
    palette: bool = True,
) -> tuple[bytes, RateSearch]:
    """``scale="auto"``'s target: ``result``, found at ``step``, the first candidate that
    reaches the target, or the same target at the candidate that
    :func:`~slimcodec.scaling.choose_scale` prefers on the image's probe at the λ found
    (the model alone, as the encoder's probe codes), where that is a larger one and its
    file meets the target too and is better there: a higher PSNR at the target rate, or
    fewer bytes at the target PSNR. The first candidate that reaches a
    rate is not the best at it: on photos a ×1.5 file at 0.5 bpp is sharper than the ×1
    file that reaches 0.5 bpp near its ceiling. Costs the probe where the first candidate
    stays, and a second search at the found width, from the λ found down, where the probe
    prefers another (``palette``: the files are sent with one where it pays, and the probe
    weighs its candidates so). That search's first end, the λ found, is not coded: its
    value there is predicted from the found file's by the probe's (bpp times the ratio of the two
    candidates' bpp on the probe, PSNR plus the difference of their PSNRs), and its first
    pass is a step below it (:func:`_search`'s ``start``)."""
    data, found = result
    probe: dict[str, tuple[float, float]] = {}
    # every candidate at the λ found (lowest None), weighed with the palette where the
    # file will be sent with one
    preferred, _, _ = choose_scale(
        lambda image: codec.encode_rgb(image, found.width, grayscale, found.lmbda,
                                       palette=False),
        codec.decode_rgb, rgb, found.lmbda, codec.max_pixels, None, probe,
        colours_to_try(rgb) if palette else None)
    if preferred not in scales[scales.index(step) + 1:]:  # those before it fell short
        return result
    # At the λ found a larger scale codes more bits and more dB: the target lies below it.
    other = search(preferred, [found.width], found.lmbda,
                   _predicted(found, probe, step, preferred, by_psnr))
    if other is None:
        return result
    other_data, other_found = other
    met = _on_target(other_found.psnr if by_psnr else other_found.bpp,  # type: ignore[arg-type]
                     target, tol, by_psnr)
    passes = found.passes + other_found.passes
    if by_psnr:
        better = met and len(other_data) < len(data)
        kept = (other_data, other_found) if better else (data, found)
        return kept[0], replace(kept[1], passes=passes)
    quality = psnr(rgb, codec.decode_rgb(data)[0])
    other_quality = psnr(rgb, codec.decode_rgb(other_data)[0]) if met else -math.inf
    if other_quality > quality:
        return other_data, replace(other_found, psnr=other_quality, passes=passes)
    return data, replace(found, psnr=quality, passes=passes)


def _predicted(found: RateSearch, probe: dict[str, tuple[float, float]],
               step: tuple[float, str], other: tuple[float, str], by_psnr: bool
               ) -> float | None:
    """What the image coded at the candidate ``other`` is predicted to reach at the λ
    ``found`` reached the target with at ``step``: the found value moved as the two
    candidates' files of the probe differ (``probe``: :func:`~slimcodec.scaling.choose_scale`'s
    ``measured``), by their bpp's ratio or their PSNRs' difference. None where the probe
    did not code both."""
    a, b = probe.get(candidate_name(*step)), probe.get(candidate_name(*other))
    if a is None or b is None:
        return None
    if by_psnr:
        return None if found.psnr is None else found.psnr + b[1] - a[1]
    return found.bpp * b[0] / a[0]


def _search(
    codec: RateCodec,
    width: int,
    target: float,
    tol: float,
    max_passes: int,
    by_psnr: bool,
    measure: Callable[[int, float], tuple[bytes, float, float | None]],
    value: Callable[[float, float | None], float],
    ends: list[float],
    below: float | None = None,
    upward: bool = False,
    start: float | None = None,
) -> tuple[bytes, float, float, float | None, int] | None:
    """Search λ at one width; None if out of its reach. ``below``: search from there down,
    not from the top of the width's range; ``upward``: from the bottom of the range up.
    ``start``: the value (bpp or PSNR) predicted at the first end, which is then not coded
    where the prediction puts it beyond the slack on its side of the target (the first
    pass is the step from it); the passes alone are ever returned.

    In x = log λ, against f = the axis (:func:`_axis`) less the target's: one end of the
    range first (the top, or the bottom where ``upward``: a width whose reach lies beyond
    the target on that side costs one pass), then toward the other end by secant steps,
    the first along :data:`PRIOR_SLOPE`, no step more than :data:`GROWTH` times the one
    before (a flat stretch's secant, near the top of PSNR's range, would leap far past the
    target), until a pass lands beyond the target; then Illinois regula falsi inside that
    bracket. A step past the other end measures that end (the target beyond it: None), and
    so does the last pass while every pass has landed on the first end's side, so that the
    width's reach is always known before it is given up on."""
    lo, hi = range_ends = codec.lambda_range(width)
    hi = hi if below is None else below
    goal, slack = _axis(target, by_psnr), _slack(tol, by_psnr)
    x_lo, x_hi = math.log(lo), math.log(hi)
    # d: the way the steps go in x; d * f < 0 on the first end's side of the target
    first, far, d = (x_lo, x_hi, 1) if upward else (x_hi, x_lo, -1)

    def run(x: float) -> tuple[tuple[bytes, float, float | None], float, float]:
        lmbda = lo if x == x_lo else hi if x == x_hi else math.exp(x)
        result = measure(width, lmbda)
        v = value(result[1], result[2])
        if lmbda in range_ends:
            ends.append(v)
        return result, lmbda, _axis(v, by_psnr) - goal

    # Until a pass lands beyond the target, `near` and `earlier` are the last two passes
    # (the first may be the prediction); then the bracket: (xa, fa) below the target
    # (f < 0), (xb, fb) above it.
    predicted = None if start is None else _axis(start, by_psnr) - goal
    best: tuple[tuple[bytes, float, float | None], float, float] | None = None
    passes = 0
    if predicted is not None and d * predicted < -slack:
        near = (first, predicted)
    else:
        best = run(first)
        if d * best[2] > slack:  # the target lies beyond this end of the range
            return None
        passes = 1
        near = (first, best[2])
    earlier: tuple[float, float] | None = None
    xa = fa = xb = fb = None
    side = 0
    while best is None or (abs(best[2]) > slack and passes < max_passes):
        if xa is None or fa is None or xb is None or fb is None:  # a step toward `far`
            gap = -d * near[1]  # how far the target lies ahead, > 0
            if earlier is None:
                step = gap / PRIOR_SLOPE[by_psnr]
            else:
                last = abs(earlier[0] - near[0])
                slope = (-d * earlier[1] - gap) / last
                step = min(gap / slope if slope > 0 else math.inf, GROWTH * last)
            x = near[0] + d * step
            x = far if d * (x - far) >= 0 or passes == max_passes - 1 else x
            current = run(x)
            passes += 1
            best = current if best is None else min(best, current, key=lambda r: abs(r[2]))
            f = current[2]
            if d * f < 0:  # still on the first end's side
                if x == far and -d * f > slack:
                    return None  # and beyond the other end too
                earlier, near = near, (x, f)
            else:  # beyond the target: the bracket, this pass replacing the end on its side
                (xa, fa), (xb, fb) = ((x, f), near) if f < 0 else (near, (x, f))
                side = -1 if f < 0 else 1
            continue
        x = (xa * fb - xb * fa) / (fb - fa) if fb != fa else 0.5 * (xa + xb)
        current = run(x)
        passes += 1
        best = min(best, current, key=lambda r: abs(r[2]))  # type: ignore[type-var]
        if current[2] < 0:
            xa, fa = x, current[2]
            fb = fb / 2 if side == -1 else fb  # Illinois: halve the end that stays
            side = -1
        else:
            xb, fb = x, current[2]
            fa = fa / 2 if side == 1 else fa
            side = 1
    (data, bpp, quality), lmbda, _ = best
    return data, float(np.float32(lmbda)), bpp, quality, passes


def _axis(v: float, by_psnr: bool) -> float:
    """The search's axis: log bpp (rate is near-linear in log λ there), or PSNR in dB, an
    exact file's (infinite) counted at :data:`~slimcodec.utils.metrics.MEAN_PSNR_CEILING`
    as in a mean, so that the secant stays finite."""
    return min(v, MEAN_PSNR_CEILING) if by_psnr else math.log(max(v, 1e-9))


def _slack(tol: float, by_psnr: bool) -> float:
    """The tolerance on :func:`_axis`: ``tol`` dB, or a relative ``tol`` in log bpp."""
    return tol if by_psnr else math.log1p(tol)


def _on_target(v: float, target: float, tol: float, by_psnr: bool) -> bool:
    """Whether ``v`` (bpp, or PSNR where ``by_psnr``) lies within ``tol`` of ``target``,
    as the search judges it."""
    return abs(_axis(v, by_psnr) - _axis(target, by_psnr)) <= _slack(tol, by_psnr)


def lambdas_for_eval(codec: RateCodec, width: int, count: int = 5) -> Sequence[float]:
    """``count`` λ spread log-evenly over the width's range (``slimcodec eval``'s default)."""
    lo, hi = codec.lambda_range(width)
    if count == 1:
        return [math.sqrt(lo * hi)]
    return [math.exp(math.log(lo) + i / (count - 1) * math.log(hi / lo)) for i in range(count)]


def encode_with_rate(
    codec: RateCodec,
    rgb: np.ndarray,
    grayscale: bool = False,
    width: int | None = None,
    *,
    lmbda: float | None = None,
    quality: float | None = None,
    target_bpp: float | None = None,
    target_size: int | None = None,
    target_psnr: float | None = None,
    refine: int = 0,
    domain: str | None = None,
    max_passes: int = DEFAULT_MAX_PASSES,
    prefer: str = "quality",
    scale: Scale = 1.0,
    resampling: str = "lanczos",
    palette: bool = True,
) -> tuple[bytes, RateSearch | None]:
    """Encode ``rgb`` with at most one rate setting (none: the width's middle λ).

    ``target_size`` is the whole file's size in bytes (searched as the bpp it means for this
    image). Returns the file and, for a target, what the search did. Two settings at once,
    or a setting a single-rate model cannot take, raise :class:`RateError`.
    """
    given = [name for name, value in zip(RATE_OPTIONS, (lmbda, quality, target_bpp,
                                                       target_size, target_psnr), strict=True)
             if value is not None]
    if len(given) > 1:
        # Named as the API's keyword and as the command line's option: both reach here.
        both = [f"{name} (--{name.replace('_', '-')})" for name in given]
        raise RateError(f"give one rate setting, not {' and '.join(both)}")
    if target_bpp is not None or target_size is not None or target_psnr is not None:
        return encode_to_target(codec, rgb, target_bpp, target_psnr, width, grayscale,
                                max_passes=max_passes, refine=refine, domain=domain,
                                prefer=prefer, target_size=target_size, scale=scale,
                                resampling=resampling, palette=palette)
    if quality is not None:
        lmbda = quality_to_lambda(codec, codec.resolve_width(width), quality)
    data = codec.encode_rgb(rgb, width, grayscale, lmbda, domain=domain,
                            **_options(refine, scale, resampling, palette))
    return data, None


def _options(refine: int, scale: Scale, resampling: str, palette: bool) -> dict[str, Any]:
    """The encoder's keywords that are not their defaults (a codec without refinement
    takes no ``refine``)."""
    scaled = {"scale": scale, "resampling": resampling} if scale != 1 else {}
    return {**({"refine": refine} if refine else {}), **scaled,
            **({} if palette else {"palette": False})}


def add_rate_arguments(parser: argparse.ArgumentParser) -> None:
    """The rate options of ``slimcodec compress`` and ``slimcodec-edge encode`` (one of)."""
    # Not argparse's exclusive group: two settings get RateError's one line, as elsewhere.
    rate = parser.add_argument_group("rate (variable-rate models; one of these)")
    rate.add_argument("--lmbda", type=float,
                       help="the rate-distortion weight λ, within the width's range "
                            "(default: the middle of it)")
    rate.add_argument("--quality", type=float,
                       help="1-100, mapped monotonically onto the width's λ range in log scale")
    rate.add_argument("--target-bpp", type=float,
                       help="search λ (and, without --width, the width) for this rate")
    rate.add_argument("--target-size", type=int, metavar="BYTES",
                       help="search λ (and, without --width, the width) for this file size")
    rate.add_argument("--target-psnr", type=float,
                       help="search λ (and, without --width, the width) for this PSNR")
    rate.add_argument("--prefer", default="quality", choices=PREFER,
                      help="for a target without --width: the widest width that reaches it "
                           "(quality) or the narrowest (cost) (default: %(default)s)")
    rate.add_argument("--max-passes", type=int, default=DEFAULT_MAX_PASSES,
                      help="encoder passes per width for a target search (default: "
                           "%(default)s)")
    parser.add_argument("--scale", type=scale_argument, default=AUTO,
                        help="code the image upsampled by this factor, 1-4 (the decoder "
                             "resamples back): quality beyond the model's ceiling at high "
                             "rates, for scale² the time; auto: the scale and filter of the "
                             "lowest RD loss on a probe of the image, and for a target the "
                             "smallest scale that reaches it or, where it codes the target "
                             "better, the probe's choice (default: %(default)s)")
    parser.add_argument("--resampling", default="lanczos", choices=FILTERS,
                        help="the filter --scale upsamples and the decoder resamples with: "
                             "lanczos, or box (nearest up, area down: keeps text's edges) "
                             "(default: %(default)s)")
    parser.add_argument("--no-palette", dest="palette", action="store_false",
                        help="never send the image's colours for the decoder to snap its "
                             "output onto, nor the blocks drawn in them alone exactly, nor a "
                             "residual correcting the blocks coded worst (by default sent "
                             "where the image has few colours and that lowers the RD loss: "
                             "screens)")


def scale_argument(text: str) -> Scale:
    """``--scale``'s type: ``auto`` or a number, in argparse's terms."""
    try:
        return parse_scale(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def rate_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`encode_with_rate`'s rate keywords from :func:`add_rate_arguments`' options."""
    return {name: getattr(args, name)
            for name in (*RATE_OPTIONS, "max_passes", "prefer", "scale", "resampling",
                         "palette")}


def coded_summary(data: bytes, search: RateSearch | None = None) -> str:
    """What both command-line encoders print of a file: size, rate, image size, width, λ,
    and what a target search reached (with its PSNR when it measured one)."""
    header = unpack(data).header
    h, w = header.image_size
    rate = f", λ {header.rate:.6g}" if header.rate_kind == RateKind.LAMBDA else ""
    quality = f", {search.psnr:.2f} dB" if search is not None and search.psnr else ""
    passes = f" ({len(search.tried)} encoder passes)" if search is not None else ""
    coded = (f" (coded at {header.coded[1]}x{header.coded[0]})" if header.coded_size
             else "")
    return (f"{len(data)} bytes, {8 * len(data) / (h * w):.4f} bpp{quality}, {w}x{h}"
            f"{coded}, width {header.width}{rate}{passes}")
