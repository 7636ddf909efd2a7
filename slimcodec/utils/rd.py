"""Rate-distortion curve arithmetic: Bjøntegaard deltas and RD hulls.

Bjøntegaard, "Calculation of average PSNR differences between RD-curves" (VCEG-M33, 2001),
with piecewise cubic Hermite (PCHIP) interpolation of log-rate over PSNR, as in the
JVET common test conditions: the average rate difference of two curves over the PSNR
range they share.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator

__all__ = ["bd_rate", "bpp_span", "psnr_at_rate", "rd_hull"]

Point = tuple[float, float]  # (bpp, psnr)


def _log_rate_curve(points: Sequence[Point]) -> PchipInterpolator:
    # Settings that land on one PSNR (a codec's neighbouring qualities can give the same
    # file): keep the cheapest, the one a user would pick.
    cheapest: dict[float, float] = {}
    for r, p in points:
        cheapest[p] = min(r, cheapest.get(p, r))
    pts = sorted((p, math.log(r)) for p, r in cheapest.items())
    psnr = np.array([p for p, _ in pts])
    if len(pts) < 2 or np.any(np.diff(psnr) <= 0):
        raise ValueError("a BD curve needs at least two points with distinct PSNR")
    return PchipInterpolator(psnr, np.array([lr for _, lr in pts]))


def bd_rate(anchor: Sequence[Point], test: Sequence[Point]) -> float | None:
    """Average bitrate difference of ``test`` against ``anchor``, in percent.

    Negative means ``test`` needs fewer bits for the same PSNR. ``None`` when the curves
    share no PSNR range.
    """
    lo = max(min(p for _, p in anchor), min(p for _, p in test))
    hi = min(max(p for _, p in anchor), max(p for _, p in test))
    if hi <= lo:
        return None
    a, t = _log_rate_curve(anchor), _log_rate_curve(test)
    diff = (t.integrate(lo, hi) - a.integrate(lo, hi)) / (hi - lo)
    return float((math.exp(diff) - 1) * 100)


def psnr_at_rate(curve: Sequence[Point], bpp: float) -> float | None:
    """PSNR of ``curve`` at rate ``bpp`` (PCHIP over log rate); ``None`` outside its rates.

    The comparison that still means something when two curves share no PSNR range and
    ``bd_rate`` has nothing to say: what the other codec gives at the same number of bits.
    """
    pts = sorted(set(curve))
    rates = np.log([r for r, _ in pts])
    if len(pts) < 2 or np.any(np.diff(rates) <= 0):
        raise ValueError("a curve needs at least two points with distinct rates")
    if not rates[0] <= math.log(bpp) <= rates[-1]:
        return None
    return float(PchipInterpolator(rates, [p for _, p in pts])(math.log(bpp)))


def rd_hull(points: Sequence[Point]) -> list[Point]:
    """The RD-optimal points: the upper concave hull of PSNR over bpp, dominated points out.

    In distortion terms this is the lower convex hull: the operating points that no mix of
    the others beats.
    """
    pts = sorted(set(points))
    hull: list[Point] = []
    for p in pts:
        if hull and p[1] <= hull[-1][1]:
            continue  # more bits for no more quality
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            # drop the middle point when it lies on or below the chord to p
            if (y2 - y1) * (p[0] - x1) <= (p[1] - y1) * (x2 - x1):
                hull.pop()
            else:
                break
        hull.append(p)
    return hull


def bpp_span(points: Sequence[Point]) -> float:
    """Ratio of the highest to the lowest rate."""
    rates = [r for r, _ in points]
    return max(rates) / min(rates)
