r"""λ-scheduling (SlimCAE, Yang et al. CVPR 2021, Algorithm 1), with the overshoot rolled back.

A slimmable model trained with one λ for all widths puts the narrow widths at rates where
they are not RD-optimal. The schedule walks the adjacent width pairs from the widest down;
for pair :math:`(i, i+1)` it repeatedly multiplies the λ of every width narrower than
:math:`i` by a factor (0.8), fine-tunes, and re-measures on validation images the RD slope
between the pair,

.. math::

    s_i = \frac{\mathrm{PSNR}_i - \mathrm{PSNR}_{i+1}}{\mathrm{bpp}_i - \mathrm{bpp}_{i+1}},

for as long as the slope keeps falling. When it rises again, the official code stops but
keeps that last step; here the step is rolled back (model, optimizers and λ restored), so
each pair ends at the slope minimum actually measured. A pair also stops after
``max_tries`` accepted steps.

The first measurement, the baseline of the first pair's slope, is taken after one fine-tune
at the starting λ. Every later point comes out of a fine-tune, and a fine-tune moves the
model even when no λ changes (straight after a cosine-decayed run, every width first loses
some PSNR), so a baseline taken before any fine-tune would bias every first try.

The algorithm only sees callbacks, so it runs the same against the real trainer and a
synthetic RD model in the tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["RDPoint", "ScheduleState", "rd_slope", "schedule_lambdas"]

RDPoint = tuple[float, float]  # (bpp, psnr)


def rd_slope(points: list[RDPoint], i: int) -> float:
    """ΔPSNR/Δbpp between widths ``i`` and ``i + 1`` (dB per bit per pixel)."""
    (b0, p0), (b1, p1) = points[i], points[i + 1]
    return (p0 - p1) / (b0 - b1) if b0 != b1 else math.inf


@dataclass
class ScheduleState:
    """Where the schedule stands: enough to resume it after an interruption."""

    lambdas: list[float]
    points: list[RDPoint] = field(default_factory=list)  # of the accepted model
    pair: int = 0
    tries: int = 0
    done: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def schedule_lambdas(
    state: ScheduleState,
    measure: Callable[[], list[RDPoint]],
    finetune: Callable[[list[float]], None],
    accept: Callable[[ScheduleState], None],
    rollback: Callable[[ScheduleState], None],
    factor: float = 0.8,
    max_tries: int = 7,
    log: Callable[[dict[str, Any]], None] = lambda record: None,
) -> ScheduleState:
    """Run (or resume) the schedule from ``state``; returns the final state.

    Args:
        measure: RD points of the current model on validation data, widest width first.
        finetune: train the current model with these λ (one per width).
        accept: persist the current model and ``state`` (the new rollback point).
        rollback: restore the model persisted by the last ``accept``.
        log: receives one record per λ vector tried.
    """
    if not state.points:
        log({"event": "begin", "lambdas": list(state.lambdas)})
        finetune(list(state.lambdas))  # the baseline is fine-tuned like every try
        state.points = measure()
        log({"event": "start", "lambdas": list(state.lambdas), "points": state.points})
        accept(state)
    n = len(state.lambdas)
    while not state.done and state.pair < n - 1:
        i = state.pair
        before = rd_slope(state.points, i)
        if state.tries >= max_tries:
            _next_pair(state)
            accept(state)
            continue
        trial = [lam * factor if k > i else lam for k, lam in enumerate(state.lambdas)]
        finetune(trial)
        points = measure()
        after = rd_slope(points, i)
        record = {"event": "try", "pair": [i, i + 1], "try": state.tries + 1,
                  "lambdas": trial, "points": points, "slope_before": before,
                  "slope_after": after}
        if after > before:
            log({**record, "decision": "rolled back: slope rose"})
            rollback(state)
            _next_pair(state)
        else:
            log({**record, "decision": "accepted"})
            state.lambdas, state.points = trial, points
            state.tries += 1
        accept(state)
    state.done = True
    log({"event": "done", "lambdas": list(state.lambdas), "points": state.points})
    accept(state)
    return state


def _next_pair(state: ScheduleState) -> None:
    state.pair += 1
    state.tries = 0
