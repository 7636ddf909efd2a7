"""``slimcodec select``: the width (and λ) that fits a budget with the best rate-distortion.

Reads a profile (:mod:`slimcodec_edge.profile`), no torch. A width fits when its encoder
and decoder (``side``: either, or both) are within every limit given: latency (median, in
the profile's runtime and thread setting), MACs, peak memory. Among the widths that fit:

* with ``target_bpp``: the width with the highest PSNR at that rate (interpolated over its
  RD points in log rate; a single-rate width counts at its one point if its rate is within
  the target), and for a variable-rate model the λ that gives that rate (interpolated
  log-linearly between its points);
* with ``target_psnr``: the width that reaches it at the lowest rate, and its λ;
* with neither: the widest, the best quality the budget allows (its middle λ);
* with ``prefer="cost"`` and a target: the narrowest width that reaches it instead.

**Latency** is the edge runtime's whole encode and decode (transforms in tiles, hyper
networks, entropy coding: what a device spends), where the profile measured it (its
``latency_ms["edge"]``), else the transforms' graphs alone.

**At the image's size.** Given the size of the image being coded (``image_size``), the
profile's figures are scaled to it. Latency: its time at its size times the ratio of the
pixels the tiled transforms run on (tiles and their halos counted,
:func:`slimcodec.tiling.processed_pixels`), or, where the profile timed the edge runtime at
two sizes and their fit (a fixed cost plus a cost per such pixel) predicts more, the
fit's: small images keep a fixed cost. MACs scale by that ratio, memory by the pixel
count.
``benchmarks/budget_scaling.py`` measures how well the scaled prediction holds at 0.25×, 1×
and 4× the profiled size (section ``budget-scaling-*`` of ``benchmarks/RESULTS.md``).
Beyond that range (:data:`SCALE_RANGE`) the prediction is not measured: an image larger
than 4× is refused in one line that says to profile at its size, and one smaller than
0.25× is budgeted at 0.25× (an upper bound of what it costs).

**At the profile's tile.** The edge runtime's times are those of the tile the profile
timed (its ``"tile"``, :func:`check_tile`): a coder with another tile is refused, since
time does not follow the halos' pixels across tile sizes (``benchmarks/memory.py
--tiles``).

Nothing fitting is a :class:`~slimcodec.errors.SlimcodecError` that names the narrowest
width's cost against the limit it breaks. The command-line tools that take a budget
(`slimcodec compress`, `slimcodec select`, `slimcodec-edge encode`) share its options and
its use here: :func:`add_budget_arguments`, :func:`select_for`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slimcodec.errors import ModelMismatchError, SlimcodecError
from slimcodec.tiling import DEFAULT_TILE, processed_pixels

__all__ = ["SCALE_RANGE", "Choice", "add_budget_arguments", "apply_budget", "check_profile",
           "check_tile", "has_budget", "load_profile", "select_for", "select_width"]

#: The image sizes, relative to the profile's pixel count, over which scaled budgets were
#: measured to hold (see the module docstring).
SCALE_RANGE = (0.25, 4.0)


@dataclass(frozen=True)
class Choice:
    """A selected width: its λ, the rate and PSNR expected from its own RD points (at the
    target, when one was given), why it was chosen, and its own costs (``costs``: encoder
    and decoder latency in ms, MACs and memory in MiB, scaled to the image when
    ``scale`` ≠ 1) and measured RD range (``span``: lowest and highest bpp and PSNR)."""

    width: int
    lmbda: float | None
    bpp: float | None
    psnr: float | None
    reason: str
    costs: dict[str, float] = field(default_factory=dict)
    span: tuple[float, float, float, float] | None = None
    scale: float = 1.0

    def describe(self) -> str:
        """The choice in a few lines, as ``slimcodec select`` prints it."""
        rate = f", λ {self.lmbda:.6g}" if self.lmbda is not None else ""
        lines = [f"width {self.width}{rate}: {self.reason}"]
        if self.bpp is not None and self.psnr is not None:
            lines.append(f"  expected: {self.bpp:.4f} bpp, {self.psnr:.2f} dB")
        if self.span is not None:
            lo, hi, qlo, qhi = self.span
            lines.append(f"  its measured range: {lo:.4g}-{hi:.4g} bpp, {qlo:.2f}-{qhi:.2f} dB")
        if self.costs:
            c = self.costs
            where = (f"scaled ×{self.scale:.3g} to the image" if self.scale != 1
                     else "at the profile's size")
            lines.append(f"  its cost ({where}): encoder {c['encoder_ms']:.4g} ms, decoder "
                         f"{c['decoder_ms']:.4g} ms, {c['macs']:.3g} MACs, "
                         f"{c['memory_mb']:.4g} MiB")
        return "\n".join(lines)


def load_profile(path: str | os.PathLike) -> dict[str, Any]:
    try:
        profile = json.loads(Path(path).read_text())
        profile["widths"][0]["encoder"]["macs"]
        tile = _timed_tile(profile)
        if not isinstance(tile, int) or isinstance(tile, bool) or tile < 1:
            raise ValueError(f"tile {tile!r}")
    except FileNotFoundError:
        raise SlimcodecError(f"{path}: no such profile") from None
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        raise SlimcodecError(f"{path}: not a slimcodec profile (slimcodec profile --json)"
                             ) from None
    return profile


def check_profile(profile: dict[str, Any], fingerprint: bytes, domain_id: int = 0) -> None:
    """Raise ``ModelMismatchError`` unless ``profile`` measured the model of ``fingerprint``;
    warn when it measured another domain than the one coded (an adapter changes the costs)."""
    if profile.get("fingerprint") != fingerprint.hex():
        raise ModelMismatchError(
            f"the profile measured {profile.get('model', 'another model')} (fingerprint "
            f"{profile.get('fingerprint')}), not this model ({fingerprint.hex()})")
    measured = (profile.get("adapter") or {}).get("domain_id", 0)
    if measured != domain_id:
        what = (f"domain id {measured}'s adapter" if measured else "the source codec")
        coded = f"domain id {domain_id}'s adapter" if domain_id else "the source codec"
        warnings.warn(f"the profile measured {what}, but the image is coded with {coded}: "
                      "its costs differ (slimcodec profile --adapter)", stacklevel=2)


def add_budget_arguments(p: argparse.ArgumentParser, required_profile: bool) -> None:
    """The budget options, the same for every command that takes one."""
    g = p.add_argument_group("budget (width selection from a profile)")
    g.add_argument("--profile", required=required_profile,
                   help="profile JSON written by `slimcodec profile --json`")
    g.add_argument("--max-latency-ms", "--budget-ms", type=float, dest="max_latency_ms",
                   help="median latency limit (onnxruntime)")
    g.add_argument("--max-macs", type=float, help="MAC limit")
    g.add_argument("--max-memory-mb", type=float, help="peak activation memory limit (MiB)")
    g.add_argument("--side", default="both", choices=["encoder", "decoder", "both"],
                   help="which side must fit the limits (default: %(default)s)")
    g.add_argument("--all-threads", action="store_true",
                   help="use the all-thread latencies (default: one thread)")
    if required_profile:  # select: the coders know the image's size themselves
        g.add_argument("--image-size", type=_size, metavar="WxH",
                       help="scale the profile's figures to an image of this size")


def _size(text: str) -> tuple[int, int]:
    """``WxH`` as (height, width)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WxH") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive size")
    return h, w


def has_budget(args: argparse.Namespace) -> bool:
    return any(v is not None for v in (args.max_latency_ms, args.max_macs, args.max_memory_mb))


def select_for(args: argparse.Namespace, target_bpp: float | None = None,
               target_psnr: float | None = None, fingerprint: bytes | None = None,
               domain_id: int = 0, image_size: tuple[int, int] | None = None,
               prefer: str = "quality") -> Choice:
    """:func:`select_width` for the options of :func:`add_budget_arguments`; with
    ``fingerprint``, the profile is first checked to be of that model (and domain); with
    ``image_size`` (or ``--image-size``), the figures are scaled to that image."""
    profile = load_profile(args.profile)
    if fingerprint is not None:
        check_profile(profile, fingerprint, domain_id)
    if getattr(args, "tile", None) is not None:  # a coder's budget (select codes nothing)
        check_tile(profile, args.tile)
    return select_width(profile, args.max_latency_ms, args.max_macs, args.max_memory_mb,
                        target_bpp, target_psnr, args.side,
                        threads="threads_all" if args.all_threads else "threads_1",
                        image_size=image_size or getattr(args, "image_size", None),
                        prefer=prefer)


def apply_budget(args: argparse.Namespace, fingerprint: bytes, domain_id: int = 0,
                 lambda_range: Callable[[int], tuple[float, float]] | None = None,
                 rate_given: bool = False, image_size: tuple[int, int] | None = None
                 ) -> Choice | None:
    """A coder's budget: with one in ``args``, select from its profile (checked to be of
    ``fingerprint``'s model), its figures scaled to ``image_size`` (height, width), and set
    ``args.width``; for a variable-rate model (``lambda_range``) with no rate option given,
    ``args.lmbda`` too, within the width's range. None without a budget."""
    if not has_budget(args):
        return None
    if not args.profile:
        raise SlimcodecError("a budget needs --profile P.json (slimcodec profile)")
    if args.width is not None:
        raise SlimcodecError("give --width or a budget, not both")
    choice = select_for(args, fingerprint=fingerprint, domain_id=domain_id,
                        image_size=image_size)
    args.width = choice.width
    if lambda_range is not None and not rate_given and choice.lmbda is not None:
        lo, hi = lambda_range(choice.width)
        args.lmbda = min(max(choice.lmbda, lo), hi)
    return choice


@dataclass(frozen=True)
class _Scale:
    """How the profile's figures grow to the image's: time and MACs with the pixels the
    transforms run on (``work``, a ratio; ``processed``, the image's count, where one is
    given), memory with the pixels."""

    work: float = 1.0
    pixels: float = 1.0
    processed: float | None = None


def _cost(entry: dict[str, Any], side: str, what: str, runtime: str | None, threads: str,
          scale: _Scale = _Scale()) -> float:
    parts = ("encoder", "decoder") if side == "both" else (side,)
    return max(_part_cost(entry[part], what, runtime, threads, scale) for part in parts)


def _part_cost(p: dict[str, Any], what: str, runtime: str | None, threads: str,
               scale: _Scale = _Scale()) -> float:
    """One side's latency (ms), MACs or memory (MiB) at the image's size. Latency: its time
    at the profile's size scaled by the work, or, where the profile fitted two sizes
    (``fit``: a fixed cost plus a cost per million processed pixels) and the fit predicts
    more (an image smaller than the profile's, whose fixed cost does not shrink), the fit's.
    The larger of the two: a fit through two nearby sizes is too noisy to extrapolate far
    (``benchmarks/budget_scaling.py``)."""
    if what == "latency":
        latency = p["latency_ms"]
        runtime = runtime or ("edge" if threads in latency.get("edge", {}) else "onnxruntime")
        scaled = latency[runtime][threads]["median"] * scale.work
        fit = latency[runtime].get("fit") if threads == "threads_1" else None
        if fit is not None and scale.processed is not None:
            return max(scaled, fit["fixed_ms"] + fit["ms_per_mpixel"] * scale.processed / 1e6)
        return scaled
    if what == "macs":
        return p["macs"] * scale.work
    return p["peak_memory_bytes"] / 2**20 * scale.pixels


def _timed_tile(profile: dict[str, Any]) -> int:
    """The tile the profile's edge times were measured with (a profile from before tiles
    were recorded timed the default)."""
    return profile.get("tile", DEFAULT_TILE)


def check_tile(profile: dict[str, Any], tile: int) -> None:
    """Refuse a coder whose tile is not the one the profile timed: time does not follow the
    halos' pixels across tile sizes (``benchmarks/memory.py --tiles``), so scaling the
    profile's figures to another tile would be a guess."""
    timed = _timed_tile(profile)
    if tile != timed:
        raise SlimcodecError(f"the profile timed tiles of {timed}, this coder's are {tile}: "
                             f"profile with --tile {tile}, or code with --tile {timed}")


def _scale(profile: dict[str, Any], image_size: tuple[int, int] | None) -> _Scale:
    """The image's work and pixels over the profile's; refused beyond :data:`SCALE_RANGE`."""
    if image_size is None:
        return _Scale()
    h0, w0 = profile.get("size", (0, 0))
    h, w = image_size
    if not h0 * w0:
        raise SlimcodecError("the profile does not say what image size it measured")
    scale = (h * w) / (h0 * w0)
    lo, hi = SCALE_RANGE
    if scale > hi:
        raise SlimcodecError(
            f"a {w}x{h} image is {scale:.3g}x the profile's {w0}x{h0} pixels, beyond the "
            f"{hi:g}x its figures were measured to scale to: profile at this size "
            f"(slimcodec profile --size {-(-w // 16) * 16}x{-(-h // 16) * 16})")
    # Smaller images are not measured to cost less than this (fixed costs dominate there):
    # costs stay those of the smallest size measured, an upper bound.
    if scale < lo:
        h, w = round(h0 * lo**0.5), round(w0 * lo**0.5)
    tile = _timed_tile(profile)
    processed = processed_pixels(h, w, tile=tile)
    return _Scale(processed / processed_pixels(h0, w0, tile=tile), max(scale, lo),
                  processed)


def _choice(entry: dict[str, Any], lmbda: float | None, bpp: float | None,
            psnr: float | None, reason: str, runtime: str | None, threads: str,
            scale: _Scale) -> Choice:
    """A :class:`Choice` with the width's own costs and measured RD range."""
    work = scale.work
    costs = {"encoder_ms": _part_cost(entry["encoder"], "latency", runtime, threads, scale),
             "decoder_ms": _part_cost(entry["decoder"], "latency", runtime, threads, scale),
             "macs": (entry["encoder"]["macs"] + entry["decoder"]["macs"]) * work,
             "memory_mb": _cost(entry, "both", "memory", runtime, threads, scale)}
    points = entry.get("points") or []
    span = (min(p["bpp"] for p in points), max(p["bpp"] for p in points),
            min(p["psnr"] for p in points), max(p["psnr"] for p in points)) if points else None
    if work != 1:
        reason += f"; costs scaled ×{work:.3g} from the profile's size to the image's"
    return Choice(entry["width"], lmbda, bpp, psnr, reason, costs, span, work)


def _at_rate(points: list[dict[str, Any]], bpp: float) -> tuple[float, float] | None:
    """(PSNR, bpp) a width gives at ``bpp``: interpolated in log rate over its points, or,
    for a single-rate width, its one point when that is within the rate (its own bpp)."""
    pts = sorted((p["bpp"], p["psnr"]) for p in points)
    if len(pts) == 1:
        return (pts[0][1], pts[0][0]) if pts[0][0] <= bpp * 1.03 else None
    if not pts[0][0] <= bpp <= pts[-1][0]:
        return None
    psnr = float(np.interp(math.log(bpp), [math.log(b) for b, _ in pts], [p for _, p in pts]))
    return psnr, bpp


def _span(candidates: list[dict[str, Any]], key: str) -> str:
    """The range of ``key`` (bpp or psnr) the widths' points cover, for a refusal."""
    values = [p[key] for e in candidates for p in e["points"]]
    unit = "bpp" if key == "bpp" else "dB"
    return f"{min(values):.4g}-{max(values):.4g} {unit}"


def _interp_lambda(points: list[dict[str, Any]], key: str, value: float) -> float | None:
    pts = sorted((p[key], p["lmbda"]) for p in points if "lmbda" in p)
    if len(pts) < 2:
        return pts[0][1] if pts else None
    xs = [math.log(v) if key == "bpp" else v for v, _ in pts]
    x = math.log(value) if key == "bpp" else value
    return float(math.exp(np.interp(x, xs, [math.log(lam) for _, lam in pts])))


def select_width(
    profile: dict[str, Any],
    max_latency_ms: float | None = None,
    max_macs: float | None = None,
    max_memory_mb: float | None = None,
    target_bpp: float | None = None,
    target_psnr: float | None = None,
    side: str = "both",
    runtime: str | None = None,
    threads: str = "threads_1",
    image_size: tuple[int, int] | None = None,
    prefer: str = "quality",
) -> Choice:
    """The best width for the limits and target (see the module docstring); ``image_size``
    (height, width): the image being coded, to which the profile's figures are scaled;
    ``runtime``: whose latency (default: the edge runtime's where measured)."""
    if side not in ("encoder", "decoder", "both"):
        raise ValueError(f"side must be encoder, decoder or both, not {side!r}")
    if target_bpp is not None and target_psnr is not None:
        raise ValueError("give at most one of target_bpp and target_psnr")
    if prefer not in ("quality", "cost"):
        raise ValueError(f"prefer must be quality or cost, not {prefer!r}")
    scale = _scale(profile, image_size)
    limits = {"latency": max_latency_ms, "macs": max_macs, "memory": max_memory_mb}
    units = {"latency": "ms", "macs": "MACs", "memory": "MiB"}
    fitting, broken = [], []
    for entry in sorted(profile["widths"], key=lambda e: e["width"]):
        over = [(what, cost, limit) for what, limit in limits.items() if limit is not None
                and (cost := _cost(entry, side, what, runtime, threads, scale)) > limit]
        (broken if over else fitting).append((entry, over))
    if not fitting:
        entry, over = broken[0]
        what, cost, limit = over[0]
        at = " at this image's size" if scale != _Scale() else ""
        raise SlimcodecError(f"no width fits: the narrowest, {entry['width']}, needs "
                             f"{cost:.4g} {units[what]} of {what} ({side}){at}, over the "
                             f"limit of {limit:g}")
    candidates = [e for e, _ in fitting]

    def chosen(entry: dict[str, Any], lmbda: float | None, bpp: float | None,
               psnr: float | None, reason: str) -> Choice:
        return _choice(entry, lmbda, bpp, psnr, reason, runtime, threads, scale)

    if target_bpp is None and target_psnr is None:
        best = candidates[-1]
        points = best.get("points", [])
        lmbdas = sorted(p["lmbda"] for p in points if "lmbda" in p)
        lmbda = float(math.sqrt(lmbdas[0] * lmbdas[-1])) if lmbdas else None
        return chosen(best, lmbda, None, None,
                      f"widest of {len(candidates)} widths within the limits")
    if not all(e.get("points") for e in candidates):
        raise SlimcodecError("a rate or quality target needs RD points in the profile "
                             "(slimcodec profile --eval EVAL.json)")
    if target_bpp is not None:
        scored = [(_at_rate(e["points"], target_bpp), e) for e in candidates]
        scored = [(q, e) for q, e in scored if q is not None]
        if not scored:
            raise SlimcodecError(f"no width within the limits reaches {target_bpp:g} bpp: "
                                 f"they cover {_span(candidates, 'bpp')}")
        if prefer == "cost":
            (psnr, bpp), best = scored[0]  # narrowest first
            why = "narrowest width within the limits"
        else:
            (psnr, bpp), best = max(scored, key=lambda s: s[0][0])
            why = "highest PSNR of the widths within the limits"
        lmbda = _interp_lambda(best["points"], "bpp", target_bpp)
        return chosen(best, lmbda, bpp, psnr, f"{why} at {target_bpp:g} bpp")
    reach = []
    for e in candidates:
        pts = sorted((p["psnr"], p["bpp"]) for p in e["points"])
        if pts[-1][0] >= target_psnr:
            bpp = float(np.interp(target_psnr, [p for p, _ in pts], [b for _, b in pts]))
            reach.append((bpp, e))
    if not reach:
        raise SlimcodecError(f"no width within the limits reaches {target_psnr:g} dB: they "
                             f"cover {_span(candidates, 'psnr')}")
    if prefer == "cost":
        bpp, best = reach[0]
        why = "narrowest width within the limits reaching"
    else:
        bpp, best = min(reach, key=lambda r: r[0])
        why = "lowest rate of the widths within the limits reaching"
    lmbda = _interp_lambda(best["points"], "psnr", target_psnr)
    return chosen(best, lmbda, bpp, target_psnr, f"{why} {target_psnr:g} dB")
