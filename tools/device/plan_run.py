"""How long a run to start, and whether to compile its step, from the trial's figures.

    python3 tools/device/plan_run.py TRIAL_JSON CONFIG SECONDS  ->  "STEPS COMPILE"

TRIAL_JSON: ``benchmarks/train_throughput.py --json``; CONFIG: the step the run takes
(``device`` or ``device-bf16``); SECONDS: the time the run has. The run compiles (COMPILE 1)
when the trial measured ``CONFIG-compiled`` and, its compilation taken out as long as the
trial's took, it still makes more steps in SECONDS. STEPS: 90% of what fits (the cosine
schedule's horizon; ``--time-limit`` stops the run in any case).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def plan(trial: dict, config: str, seconds: float) -> tuple[int, bool]:
    """(steps, compile) for a run of ``config`` given ``seconds``."""
    plain = trial[config]["steps_per_s"] * seconds
    compiled = trial.get(f"{config}-compiled")
    fused = (compiled["steps_per_s"] * max(0.0, seconds - compiled["first_step_s"])
             if compiled else 0.0)
    return max(1, int(0.9 * max(plain, fused))), fused > plain


if __name__ == "__main__":
    trial = json.loads(Path(sys.argv[1]).read_text())
    steps, compile_step = plan(trial, sys.argv[2], float(sys.argv[3]))
    print(steps, int(compile_step))
