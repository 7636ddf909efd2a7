"""How long must a λ-scheduling fine-tune be for its RD measurement to mean something?

Each λ-schedule try scales the λ of the narrower widths (by 0.8), fine-tunes, and compares
an RD slope measured on validation images. The official code fine-tunes 20 steps. From one
model and for each fine-tune length N, this runs two fine-tunes from the same weights with
the same seed: one with λ unchanged (what the measurement moves by itself: the drift) and
one with every width but the widest at λ × factor (the first try of the first pair). It
reports, per length, the drift of the narrower widths' rate, the response of their rate to
the λ change (the scaled run against the unchanged one, so that drift cancels), and the
slope between the first pair that each run measures.

    python benchmarks/finetune_length.py --model runs3/stage1/model.pt \
        --data runs3/data/train --val runs3/data/val --lengths 20 50 200
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from common import write_section

from slimcodec.training import TrainConfig, Trainer
from slimcodec.training.lambda_schedule import rd_slope
from slimcodec.training.trainer import load_validation, measure_rd, saved_config
from slimcodec.zoo import load_model, model_meta


def finetune(args: argparse.Namespace, recipe: dict, lambdas: list[float],
             steps: int) -> tuple[list, float]:
    """Fine-tune a fresh copy of the model as a λ-schedule try does; its RD points, seconds.

    ``recipe``: the TrainConfig fields every fine-tune shares."""
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(TrainConfig(out=out, lambdas=lambdas, finetune_steps=steps, **recipe))
        trainer.finetune_from = 0
        t0 = time.perf_counter()
        trainer.run(steps, desc=f"fine-tune {steps}", checkpoint=False)
        seconds = time.perf_counter() - t0
        return measure_rd(trainer.model, args.val_images), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a trained multi-width model file")
    ap.add_argument("--data", required=True)
    ap.add_argument("--val", required=True)
    ap.add_argument("--lengths", type=int, nargs="+", default=[20, 50, 200])
    ap.add_argument("--factor", type=float, default=0.8)
    ap.add_argument("--finetune-lr", type=float, default=2e-4)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    args.val_images = load_validation(args.val, torch.device("cpu"))

    start_model, meta = load_model(args.model), model_meta(args.model)
    saved = saved_config(meta["config"])
    recipe = {"data": args.data, "widths": list(start_model.widths), "gdn": start_model.gdn,
              "init": args.model, "steps": 0, "patch": args.patch, "batch": args.batch,
              "seed": args.seed, "finetune_lr": args.finetune_lr, "aux_lr": saved["aux_lr"],
              "decoder_quantizer": saved["decoder_quantizer"]}
    base = list(meta["lambdas"])
    scaled = [base[0]] + [v * args.factor for v in base[1:]]
    start = measure_rd(start_model, args.val_images)
    rows = ["| fine-tune steps | seconds (both runs) | narrower widths' rate drift, λ unchanged "
            "| their rate response to λ × " f"{args.factor} | response / drift "
            "| slope 0–1, λ unchanged | slope 0–1, scaled |",
            "|---:|---:|---:|---:|---:|---:|---:|"]
    for steps in args.lengths:
        same, t_same = finetune(args, recipe, base, steps)
        moved, t_moved = finetune(args, recipe, scaled, steps)
        # Mean over the scaled widths of the relative rate change.
        drift = np.mean([abs(s[0] / p[0] - 1) for s, p in zip(same[1:], start[1:], strict=True)])
        response = np.mean([m[0] / s[0] - 1 for m, s in zip(moved[1:], same[1:], strict=True)])
        rows.append(f"| {steps} | {t_same + t_moved:.0f} | {drift * 100:.2f}% "
                    f"| {response * 100:+.2f}% | {abs(response) / max(drift, 1e-9):.1f} "
                    f"| {rd_slope(same, 0):.1f} | {rd_slope(moved, 0):.1f} |")
    body = f"""## λ-schedule fine-tune length

`{args.model}` (λ {', '.join(f'{v:.4g}' for v in base)}), fine-tuned as a λ-schedule try
(cosine from lr {args.finetune_lr}, patch {args.patch}, batch {args.batch}, seed
{args.seed}), measured on {len(args.val_images)} validation images. Drift: how far the
narrower widths' rate moves from the start model's when no λ changes. Response: how far
the λ change moves it, against the λ-unchanged run of the same length. A try's slope
comparison means something only when the response clearly exceeds the drift.

{chr(10).join(rows)}"""
    write_section("finetune_length", body)
    print(body)


if __name__ == "__main__":
    main()
