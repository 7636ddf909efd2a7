"""What a run directory's logs say about the compute it took, and how its λ read.

``slimcodec train`` writes ``metrics.jsonl`` (one line per step, with the seconds since
that ``run()`` call began) and, when λ-scheduling, ``lambda_schedule.jsonl`` (one line per
event, with a wall-clock time). Model cards and the training-progress benchmark read their
wall times from here, so both count the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from slimcodec.zoo import model_meta

__all__ = ["format_lambdas", "round_compute", "schedule_seconds", "training_seconds"]


def training_seconds(run: str | Path) -> float:
    """Wall time of the training steps of a run, from its metrics log.

    Each line carries the seconds since its ``run()`` call began; a drop marks a new call
    (a resume or a λ-schedule fine-tune).
    """
    total, last = 0.0, 0.0
    for line in (Path(run) / "metrics.jsonl").read_text().splitlines():
        seconds = json.loads(line)["seconds"]
        total += seconds - last if seconds >= last else seconds
        last = seconds
    return total


def schedule_seconds(run: str | Path) -> float:
    """Wall time of λ-scheduling, rolled-back tries and measurements included.

    The log spans it from its "begin" line on. Logs written before that line existed start
    after the baseline fine-tune; for them the model file's own timer of its last session
    is taken when it is the longer (it is the whole stage when the stage was not resumed).
    """
    run = Path(run)
    records = [json.loads(line)
               for line in (run / "lambda_schedule.jsonl").read_text().splitlines()]
    span = records[-1]["time"] - records[0]["time"]
    if records[0]["event"] == "begin":
        return span
    return max(span, model_meta(run / "model.pt")["seconds_this_session"])


def round_compute(runs: str | Path) -> tuple[int, float]:
    """Steps and wall-clock seconds of one ``benchmarks/train_default.sh`` round.

    ``runs`` is the round's RUNS folder. It counts what the shipped model had: stage 1's joint
    training and stage 2's λ-scheduling, not the comparison models trained beside them.
    """
    stage1, default = Path(runs) / "stage1", Path(runs) / "default"
    steps = model_meta(stage1 / "model.pt")["steps"] + model_meta(default / "model.pt")["steps"]
    return steps, training_seconds(stage1) + schedule_seconds(default)


def format_lambdas(lambdas: Sequence[float]) -> str:
    """One λ per width as cards and tables print it: ``0.005 for all`` or each, widest first."""
    if len(set(lambdas)) == 1:
        return f"{lambdas[0]:g} for all"
    return ", ".join(f"{v:.5f}" for v in lambdas)
