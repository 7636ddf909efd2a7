"""Content-adaptive encoding (issue 14): refined against plain encoding, per width and steps.

For every width, the model's RD curve (λ spread over the width's range for a variable-rate
model; a single-rate model has one point per width, and the section then gives the RD-loss
change instead of a BD-rate) is measured with plain encoding and with 25, 50, 100, 200 and
500 refinement steps, on the same images, with real files. Encode time is given as a ratio
to plain encoding measured in the same run; decoding is the plain decoder's throughout.

The default relaxation (stochastic Gumbel annealing) is compared with straight-through
rounding at the default number of steps (``--ste-steps``, 0 to skip).

    python benchmarks/refine.py --images ../shared/data/photos --crop 256x256 --count 2 \\
        [--model slimcae-vr5] [--steps 25 50 100 200 500] [--lambdas 3] [--ste-steps 100]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import FIGURES, fmt, load_test_images, parse_crop, table_head, write_section

from slimcodec.api import codec_for
from slimcodec.rate_control import lambdas_for_eval
from slimcodec.refine import DEFAULT_REFINE_STEPS
from slimcodec.utils.metrics import psnr
from slimcodec.utils.rd import bd_rate, psnr_at_rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", default="../shared/data/photos",
                   help="test photos (default: the shared photos, from the repository root)")
    p.add_argument("--crop", default="256x256")
    p.add_argument("--count", type=int, default=2, help="images used (the first N)")
    p.add_argument("--model", default="slimcae-vr5")
    p.add_argument("--steps", type=int, nargs="+", default=[25, 50, 100, 200, 500])
    p.add_argument("--lambdas", type=int, default=3, help="λ per width (variable rate)")
    p.add_argument("--ste-steps", type=int, default=DEFAULT_REFINE_STEPS,
                   help="also measure straight-through rounding at this many steps (0: no)")
    args = p.parse_args()
    crop = parse_crop(args.crop)
    images = load_test_images(args.images, crop)[: args.count]
    codec = codec_for(args.model)
    # (steps, relaxation); plain encoding is (0, "sga")
    settings = [(0, "sga"), *((s, "sga") for s in args.steps)]
    if args.ste_steps:
        settings.append((args.ste_steps, "ste"))
    columns = [*args.steps, *([f"{args.ste_steps}-ste"] if args.ste_steps else [])]
    results = {}  # (width, λ, column) -> (bpp, psnr, encode seconds)
    for width in codec.widths:  # warm-up: the first encodes at a width run slower
        codec.encode_rgb(images[0][1], width, refine=2)
    for width in codec.widths:
        lambdas = (lambdas_for_eval(codec, width, args.lambdas) if codec.variable_rate
                   else [None])
        for lmbda in lambdas:
            for steps, relaxation in settings:
                codec.refine_relaxation = relaxation
                column = steps if relaxation == "sga" else f"{steps}-{relaxation}"
                bpp = quality = seconds = 0.0
                for _, rgb in images:
                    t0 = time.perf_counter()
                    data = codec.encode_rgb(rgb, width, lmbda=lmbda, refine=steps)
                    seconds += time.perf_counter() - t0
                    out, _ = codec.decode_rgb(data)
                    bpp += 8 * len(data) / rgb[..., 0].size
                    quality += psnr(rgb, out)
                n = len(images)
                results[(width, lmbda, column)] = (bpp / n, quality / n, seconds / n)
                print(width, lmbda, column, results[(width, lmbda, column)], flush=True)
    rows, gains = [], {s: [] for s in args.steps}
    widths = sorted({w for w, _, _ in results}, reverse=True)
    for width in widths:
        keys = sorted({lam for w, lam, _ in results if w == width}, key=lambda v: v or 0)
        plain = [results[(width, lam, 0)][:2] for lam in keys]
        base_time = sum(results[(width, lam, 0)][2] for lam in keys)
        cells = [str(width)]
        for steps in columns:
            refined = [results[(width, lam, steps)][:2] for lam in keys]
            ratio = sum(results[(width, lam, steps)][2] for lam in keys) / base_time
            if len(keys) > 1:
                bd = bd_rate(plain, refined)
                dpsnr = [psnr_at_rate(refined, b) for b, _ in plain]
                dpsnr = [g - q for g, (_, q) in zip(dpsnr, plain, strict=True) if g is not None]
                gain = np.mean(dpsnr) if dpsnr else None
                cells.append(f"{fmt(bd, '+.1f', '%')} / {fmt(gain, '+.2f')} dB / "
                             f"{ratio:.0f}x")
                if steps in gains:
                    gains[steps].append(bd)
            else:
                (b0, q0), (b1, q1) = plain[0], refined[0]
                cells.append(f"{(b1 / b0 - 1) * 100:+.1f}% bpp, {q1 - q0:+.2f} dB / {ratio:.0f}x")
        rows.append("| " + " | ".join(cells) + " |")
    _plot(gains, args.model)
    h, w = images[0][1].shape[:2]
    body = f"""## Content-adaptive encoding: refined against plain (`{args.model}`)

{len(images)} images ({', '.join(n for n, _ in images)}), centre crop {w}x{h}; each width at
{args.lambdas if codec.variable_rate else 1} λ over its range. Per steps setting: BD-rate of the
refined curve against the plain one (negative is better) / mean ΔPSNR at the plain points'
rates / encode time as a multiple of plain encoding's (same run). Refinement relaxes
rounding by stochastic Gumbel annealing (`slimcodec.refine`); the last column, for
comparison, uses straight-through rounding into the decoder and noise for the rate. Files
are ordinary: the plain decoder decodes them, at unchanged speed, to the PSNR the encoder
predicted (`tests/test_refine.py`).

{table_head(["width", *[f"{s} steps" for s in args.steps],
             *([f"{args.ste_steps} steps, straight-through"] if args.ste_steps else [])])}
{chr(10).join(rows)}

![gain against steps](figures/refine.png)"""
    write_section("refine", body)
    print(body)


def _plot(gains: dict[int, list], model: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    steps = sorted(gains)
    values = [[g for g in gains[s] if g is not None] for s in steps]
    if not any(values):
        return
    FIGURES.mkdir(exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, [np.mean(v) if v else np.nan for v in values], marker="o")
    ax.set(xlabel="refinement steps", ylabel="BD-rate vs plain (%), mean over widths",
           xscale="log", title=f"{model}: latent refinement")
    ax.set_xticks(steps, [str(s) for s in steps])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(FIGURES / "refine.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
