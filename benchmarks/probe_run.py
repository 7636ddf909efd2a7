"""A quick probe of a training run's last checkpoint (or a model file, such as the one a GPU
call brings back) against a shipped model: estimated bpp
(from the likelihoods) and PSNR (unrounded reconstruction) at each width's lowest, middle and
highest λ, averaged over a few held-out photos. Seconds on one thread, so it can look at a
run while it trains; the real measurement is the model's benchmark.

    python benchmarks/probe_run.py ../runs-hp/hp --reference slimcae-vr5 [--images 3]
    python benchmarks/probe_run.py ../runs-gpu/model.pt --reference slimcae-hpc

At the same λ a run may sit elsewhere on its curve (more bits for more dB), so each point is
also compared at equal PSNR: against the reference's curve at that width, traced at
``--curve`` λ (log-spaced over the reference's range at that width) and at the probed λ
inside the reference's bounds, interpolated in log-rate. A run trained beyond the
reference's λ bounds (``--lambda-bounds``) has no reference point there, only the
comparison at equal PSNR where its PSNR lies on the curve.

``--relaxed`` adds the rate training sees under the uniform-noise relaxation (the entropy
models in training mode, a fixed seed), beside the coded one, for both models.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from common import load_test_images
from compressai.entropy_models import EntropyModel

from slimcodec.training.trainer import checkpoint_model
from slimcodec.zoo import load_model


def point(model, x: torch.Tensor) -> tuple[float, float]:
    out = model(x)
    bits = sum(float(-torch.log2(v).sum()) for v in out["likelihoods"].values())
    mse = float(((out["x_hat"].clamp(0, 1) - x) ** 2).mean())
    return bits / (x.shape[2] * x.shape[3]), 10 * math.log10(1 / mse)


def measure(model, xs: list[torch.Tensor], width: int, lmbda: float) -> tuple[float, float]:
    """Mean bpp and PSNR over ``xs`` at one width and λ."""
    model.set_width(width)
    model.set_lambda(lmbda)
    pts = [point(model, x) for x in xs]
    return float(np.mean([b for b, _ in pts])), float(np.mean([q for _, q in pts]))


def relaxed_bpp(model, xs: list[torch.Tensor], width: int, lmbda: float) -> float:
    """Mean bpp over ``xs`` under the noise relaxation: only the entropy models in training
    mode (the rest of the model, its activation tracking included, stays in eval)."""
    model.set_width(width)
    model.set_lambda(lmbda)
    coders = [m for m in model.modules() if isinstance(m, EntropyModel)]
    rates = []
    try:
        for m in coders:
            m.train()
        for x in xs:
            torch.manual_seed(0)  # the same noise for every model
            out = model(x)
            bits = sum(float(-torch.log2(v).sum()) for v in out["likelihoods"].values())
            rates.append(bits / (x.shape[2] * x.shape[3]))
    finally:
        for m in coders:
            m.eval()
    return float(np.mean(rates))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a training run's folder (its checkpoint) or a model file")
    p.add_argument("--reference", default="slimcae-vr5")
    p.add_argument("--images", type=int, default=3)
    p.add_argument("--photos", default="../shared/data/photos")
    p.add_argument("--crop", default="768x512")
    p.add_argument("--curve", type=int, default=7,
                   help="λ the reference's curve is traced at, per width")
    p.add_argument("--relaxed", action="store_true",
                   help="also the rate under the training's noise relaxation")
    args = p.parse_args()
    if args.curve < 2:
        p.error("--curve must be at least 2 (the ends of the reference's range)")
    torch.set_num_threads(1)
    w, h = (int(v) for v in args.crop.split("x"))
    images = load_test_images(args.photos, (w, h))[: args.images]
    xs = [torch.from_numpy(rgb.transpose(2, 0, 1)[None].astype(np.float32) / 255)
          for _, rgb in images]
    if Path(args.run).is_file():
        model, step = load_model(args.run).eval(), "end"
    else:
        model, step = checkpoint_model(args.run)
    reference = load_model(args.reference).eval()
    print(f"{args.run} at step {step} against {args.reference}, {len(xs)} photos {args.crop}")
    print("width  λ        reference bpp / dB   run bpp / dB   rate change   at equal PSNR"
          + ("   relaxed bpp: reference, run" if args.relaxed else ""))
    with torch.no_grad():
        for width in (model.widths[0], model.widths[-1]):
            # The run's lowest, middle and highest λ over its own range (a run may train
            # another: a higher top); the reference's curve over the reference's range and
            # at those of the three inside its bounds, so that a run that computes what the
            # reference does sits on a node of the curve, not on an interpolated chord.
            lo, hi = model.lambda_range(width)
            probed = (lo, math.sqrt(lo * hi), hi)
            ref_lo, ref_hi = reference.lambda_bounds
            grid = [float(v) for v in np.geomspace(*reference.lambda_range(width), args.curve)]
            for v in probed:
                if ref_lo <= v <= ref_hi:  # a node of its own, or the grid's one that equals it
                    grid = [g for g in grid if not math.isclose(g, v, rel_tol=1e-9)] + [v]
            traced = dict(zip(grid, (measure(reference, xs, width, v) for v in grid),
                              strict=True))
            curve = sorted(traced.values(), key=lambda c: c[1])
            curve_db = [q for _, q in curve]
            for lmbda in probed:
                b, q = measure(model, xs, width, lmbda)
                relaxed = ([relaxed_bpp(m, xs, width, lmbda) for m in (reference, model)]
                           if args.relaxed and lmbda in traced else [])
                if lmbda in traced:
                    rb, rq = traced[lmbda]
                    line = (f"{width:5d}  {lmbda:.5f}  {rb:.4f} / {rq:.2f}      "
                            f"{b:.4f} / {q:.2f}    {100 * (b / rb - 1):+.1f}%")
                else:  # beyond the reference's bounds
                    line = (f"{width:5d}  {lmbda:.5f}  {'—':^15}      {b:.4f} / {q:.2f}"
                            f"    {'—':^6}")
                if curve_db[0] <= q <= curve_db[-1]:
                    same_db = math.exp(np.interp(q, curve_db, [math.log(c) for c, _ in curve]))
                    line += f"        {100 * (b / same_db - 1):+.1f}%"
                else:
                    line += "        n/a"
                if relaxed:
                    line += f"    {relaxed[0]:.4f}, {relaxed[1]:.4f}"
                print(line)


if __name__ == "__main__":
    main()
