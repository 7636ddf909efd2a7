"""``slimcodec select``: the width (and λ) that fits a budget with the best rate-distortion.

Reads a profile (:mod:`export.profile`), no torch. A width fits when its encoder and decoder
(``side``: either, or both) are within every limit given: latency (median, in the profile's
runtime and thread setting), MACs, peak memory. Among the widths that fit:

* with ``target_bpp``: the width with the highest PSNR at that rate (interpolated over its
  RD points in log rate; a single-rate width counts at its one point if its rate is within
  the target), and for a variable-rate model the λ that gives that rate (interpolated
  log-linearly between its points);
* with ``target_psnr``: the width that reaches it at the lowest rate, and its λ;
* with neither: the widest, the best quality the budget allows (its middle λ).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slimcodec.errors import ModelMismatchError, SlimcodecError

__all__ = ["Choice", "add_budget_arguments", "apply_budget", "check_profile", "has_budget",
           "load_profile", "select_for", "select_width"]


@dataclass(frozen=True)
class Choice:
    width: int
    lmbda: float | None
    bpp: float | None
    psnr: float | None
    reason: str


def load_profile(path: str | os.PathLike) -> dict[str, Any]:
    try:
        profile = json.loads(Path(path).read_text())
        profile["widths"][0]["encoder"]["macs"]
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


def has_budget(args: argparse.Namespace) -> bool:
    return any(v is not None for v in (args.max_latency_ms, args.max_macs, args.max_memory_mb))


def select_for(args: argparse.Namespace, target_bpp: float | None = None,
               target_psnr: float | None = None, fingerprint: bytes | None = None,
               domain_id: int = 0) -> Choice:
    """:func:`select_width` for the options of :func:`add_budget_arguments`; with
    ``fingerprint``, the profile is first checked to be of that model (and domain)."""
    profile = load_profile(args.profile)
    if fingerprint is not None:
        check_profile(profile, fingerprint, domain_id)
    return select_width(profile, args.max_latency_ms, args.max_macs, args.max_memory_mb,
                        target_bpp, target_psnr, args.side,
                        threads="threads_all" if args.all_threads else "threads_1")


def apply_budget(args: argparse.Namespace, fingerprint: bytes, domain_id: int = 0,
                 lambda_range: Callable[[int], tuple[float, float]] | None = None,
                 rate_given: bool = False) -> Choice | None:
    """A coder's budget: with one in ``args``, select from its profile (checked to be of
    ``fingerprint``'s model) and set ``args.width``; for a variable-rate model
    (``lambda_range``) with no rate option given, ``args.lmbda`` too, within the width's
    range. None without a budget."""
    if not has_budget(args):
        return None
    if not args.profile:
        raise SlimcodecError("a budget needs --profile P.json (slimcodec profile)")
    if args.width is not None:
        raise SlimcodecError("give --width or a budget, not both")
    choice = select_for(args, fingerprint=fingerprint, domain_id=domain_id)
    args.width = choice.width
    if lambda_range is not None and not rate_given and choice.lmbda is not None:
        lo, hi = lambda_range(choice.width)
        args.lmbda = min(max(choice.lmbda, lo), hi)
    return choice


def _cost(entry: dict[str, Any], side: str, what: str, runtime: str, threads: str) -> float:
    parts = ("encoder", "decoder") if side == "both" else (side,)
    values = []
    for part in parts:
        p = entry[part]
        if what == "latency":
            values.append(p["latency_ms"][runtime][threads]["median"])
        elif what == "macs":
            values.append(p["macs"])
        else:
            values.append(p["peak_memory_bytes"] / 2**20)
    return max(values)


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
    runtime: str = "onnxruntime",
    threads: str = "threads_1",
) -> Choice:
    """The best width for the limits and target (see the module docstring)."""
    if side not in ("encoder", "decoder", "both"):
        raise ValueError(f"side must be encoder, decoder or both, not {side!r}")
    if target_bpp is not None and target_psnr is not None:
        raise ValueError("give at most one of target_bpp and target_psnr")
    limits = {"latency": max_latency_ms, "macs": max_macs, "memory": max_memory_mb}
    units = {"latency": "ms", "macs": "MACs", "memory": "MiB"}
    fitting, broken = [], []
    for entry in sorted(profile["widths"], key=lambda e: e["width"]):
        over = [(what, _cost(entry, side, what, runtime, threads), limit)
                for what, limit in limits.items()
                if limit is not None and _cost(entry, side, what, runtime, threads) > limit]
        (broken if over else fitting).append((entry, over))
    if not fitting:
        entry, over = broken[0]
        what, cost, limit = over[0]
        raise SlimcodecError(f"no width fits: the narrowest, {entry['width']}, needs "
                             f"{cost:.4g} {units[what]} of {what} ({side}), over the limit "
                             f"of {limit:g}")
    candidates = [e for e, _ in fitting]
    if target_bpp is None and target_psnr is None:
        best = candidates[-1]
        points = best.get("points", [])
        lmbdas = sorted(p["lmbda"] for p in points if "lmbda" in p)
        lmbda = float(math.sqrt(lmbdas[0] * lmbdas[-1])) if lmbdas else None
        return Choice(best["width"], lmbda, None, None,
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
        (psnr, bpp), best = max(scored, key=lambda s: s[0][0])
        lmbda = _interp_lambda(best["points"], "bpp", target_bpp)
        return Choice(best["width"], lmbda, bpp, psnr,
                      f"highest PSNR at {target_bpp:g} bpp of the widths within the limits")
    reach = []
    for e in candidates:
        pts = sorted((p["psnr"], p["bpp"]) for p in e["points"])
        if pts[-1][0] >= target_psnr:
            bpp = float(np.interp(target_psnr, [p for p, _ in pts], [b for _, b in pts]))
            reach.append((bpp, e))
    if not reach:
        raise SlimcodecError(f"no width within the limits reaches {target_psnr:g} dB: they "
                             f"cover {_span(candidates, 'psnr')}")
    bpp, best = min(reach, key=lambda r: r[0])
    lmbda = _interp_lambda(best["points"], "psnr", target_psnr)
    return Choice(best["width"], lmbda, bpp, target_psnr,
                  f"lowest rate reaching {target_psnr:g} dB of the widths within the limits")
