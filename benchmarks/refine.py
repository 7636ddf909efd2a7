"""Content-adaptive encoding (issue 14): refined against plain encoding, per width and steps.

For every width, the model's RD curve (λ spread over the width's range for a variable-rate
model; a single-rate model has one point per width, and the section then gives the RD-loss
change instead of a BD-rate) is measured with plain encoding and with 25, 50, 100, 200 and
500 refinement steps, on the same images, with real files. Encode time is given as a ratio
to plain encoding measured in the same run; decoding is the plain decoder's throughout.

The default relaxation (stochastic Gumbel annealing) is compared with straight-through
rounding at the default number of steps (``--ste-steps``, 0 to skip).

    python benchmarks/refine.py --images ../shared/data/photos --crop 256x256 --count 2 \\
        [--model slimcae-vr5] [--steps 25 50 100 200 500] [--lambdas 3] [--ste-steps 100] \\
        [--lr 0.01 0.03] [--name refine-slimcae-hp]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import (
    FIGURES,
    fmt,
    held_out_screens,
    load_test_images,
    parse_crop,
    table_head,
    write_section,
)

from slimcodec.api import codec_for
from slimcodec.rate_control import lambdas_for_eval
from slimcodec.refine import DEFAULT_REFINE_STEPS
from slimcodec.utils.metrics import psnr
from slimcodec.utils.rd import bd_rate, psnr_at_rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", default="../shared/data/photos",
                   help="test photos (default: the shared photos, from the repository "
                        "root), or `screens`: the benchmarks' held-out generated screens")
    p.add_argument("--crop", default="256x256")
    p.add_argument("--count", type=int, default=2, help="images used (the first N)")
    p.add_argument("--model", default="slimcae-vr5")
    p.add_argument("--steps", type=int, nargs="+", default=[25, 50, 100, 200, 500])
    p.add_argument("--lambdas", type=int, default=3, help="λ per width (variable rate)")
    p.add_argument("--ste-steps", type=int, default=DEFAULT_REFINE_STEPS,
                   help="also measure straight-through rounding at this many steps (0: no)")
    p.add_argument("--lr", type=float, nargs="+", default=None,
                   help="Adam step sizes to compare, each at every --steps (default: the "
                        "refinement's own for the model's kind)")
    p.add_argument("--name", default="refine",
                   help="the RESULTS.md section (default: refine)")
    args = p.parse_args()
    crop = parse_crop(args.crop)
    images = (held_out_screens(args.count, crop or (768, 512)) if args.images == "screens"
              else load_test_images(args.images, crop)[: args.count])
    codec = codec_for(args.model)
    lrs = args.lr or [None]
    # (label, steps, relaxation, step size); plain encoding is the first
    settings = [("plain", 0, "sga", None)]
    for lr in lrs:
        settings += [(_label(s, lr), s, "sga", lr) for s in args.steps]
    if args.ste_steps:
        settings.append((f"{args.ste_steps} steps, straight-through", args.ste_steps, "ste",
                         None))
    results = {}  # (width, λ, label) -> (bpp, psnr, encode seconds)
    for width in codec.widths:  # warm-up: the first encodes at a width run slower
        codec.encode_rgb(images[0][1], width, refine=2)
    for width in codec.widths:
        lambdas = (lambdas_for_eval(codec, width, args.lambdas) if codec.variable_rate
                   else [None])
        for lmbda in lambdas:
            for label, steps, relaxation, lr in settings:
                codec.refine_relaxation, codec.refine_lr = relaxation, lr
                bpp = quality = seconds = 0.0
                for _, rgb in images:
                    t0 = time.perf_counter()
                    data = codec.encode_rgb(rgb, width, lmbda=lmbda, refine=steps)
                    seconds += time.perf_counter() - t0
                    out, _ = codec.decode_rgb(data)
                    bpp += 8 * len(data) / rgb[..., 0].size
                    quality += psnr(rgb, out)
                n = len(images)
                results[(width, lmbda, label)] = (bpp / n, quality / n, seconds / n)
                print(width, lmbda, label, results[(width, lmbda, label)], flush=True)
    columns = [label for label, *_ in settings[1:]]
    rows = []
    gains = {lr: {s: [] for s in args.steps} for lr in lrs}  # lr -> steps -> BD-rates
    widths = sorted({w for w, _, _ in results}, reverse=True)
    for width in widths:
        keys = sorted({lam for w, lam, _ in results if w == width}, key=lambda v: v or 0)
        plain = [results[(width, lam, "plain")][:2] for lam in keys]
        base_time = sum(results[(width, lam, "plain")][2] for lam in keys)
        cells = [str(width)]
        for label, steps, relaxation, lr in settings[1:]:
            refined = [results[(width, lam, label)][:2] for lam in keys]
            ratio = sum(results[(width, lam, label)][2] for lam in keys) / base_time
            if len(keys) > 1:
                bd = bd_rate(plain, refined)
                dpsnr = [psnr_at_rate(refined, b) for b, _ in plain]
                dpsnr = [g - q for g, (_, q) in zip(dpsnr, plain, strict=True) if g is not None]
                gain = np.mean(dpsnr) if dpsnr else None
                cells.append(f"{fmt(bd, '+.1f', '%')} / {fmt(gain, '+.2f')} dB / "
                             f"{ratio:.0f}x")
                if relaxation == "sga":
                    gains[lr][steps].append(bd)
            else:
                (b0, q0), (b1, q1) = plain[0], refined[0]
                cells.append(f"{(b1 / b0 - 1) * 100:+.1f}% bpp, {q1 - q0:+.2f} dB / {ratio:.0f}x")
        rows.append("| " + " | ".join(cells) + " |")
    # The widest width's points themselves: where a curve is flat (screens), a BD-rate says
    # little and the PSNR each setting reaches says more.
    top = widths[0]
    points = "\n".join(
        f"| {'—' if lam is None else f'{lam:.3g}'} | " + " | ".join(
            "{:.3f} bpp, {:.2f} dB".format(*results[(top, lam, label)][:2])
            for label, *_ in settings) + " |"
        for lam in sorted({lam for w, lam, _ in results if w == top}, key=lambda v: v or 0))
    figure = f"{args.name}.png"
    _plot(gains, args.model, figure)
    h, w = images[0][1].shape[:2]
    ste_note = ("; the last column, for comparison, uses straight-through rounding into the "
                "decoder and noise for the rate" if args.ste_steps else "")
    step_sizes = ("" if args.lr is None else
                  " Adam's step size (`--lr`) is given with each column; it decays linearly "
                  "to zero over the steps.")
    body = f"""## Content-adaptive encoding: refined against plain (`{args.model}`)

{len(images)} images ({', '.join(n for n, _ in images)}), centre crop {w}x{h}; each width at
{args.lambdas if codec.variable_rate else 1} λ over its range. Per steps setting: BD-rate of the
refined curve against the plain one (negative is better) / mean ΔPSNR at the plain points'
rates / encode time as a multiple of plain encoding's (same run). Refinement relaxes
rounding by stochastic Gumbel annealing (`slimcodec.refine`){ste_note}.{step_sizes} Files
are ordinary: the plain decoder decodes them, at unchanged speed, to the PSNR the encoder
predicted (`tests/test_refine.py`).

{table_head(["width", *columns])}
{chr(10).join(rows)}

Width {top}, each point (mean rate of the files, mean PSNR):

{table_head(["λ", "plain", *columns])}
{points}

![gain against steps](figures/{figure})"""
    write_section(args.name, body)
    print(body)


def _label(steps: int, lr: float | None) -> str:
    return f"{steps} steps" if lr is None else f"{steps} steps, lr {lr:g}"


def _plot(gains: dict[float | None, dict[int, list]], model: str, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6, 4))
    plotted = False
    for lr, by_steps in gains.items():
        steps = sorted(by_steps)
        values = [[g for g in by_steps[s] if g is not None] for s in steps]
        if any(values):
            ax.plot(steps, [np.mean(v) if v else np.nan for v in values], marker="o",
                    label="default step size" if lr is None else f"lr {lr:g}")
            plotted = True
    if not plotted:
        plt.close(fig)
        return
    FIGURES.mkdir(exist_ok=True)
    ax.set(xlabel="refinement steps", ylabel="BD-rate vs plain (%), mean over widths",
           xscale="log", title=f"{model}: latent refinement")
    ax.set_xticks(steps, [str(s) for s in steps])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.grid(alpha=0.3)
    fig.tight_layout()
    if len(gains) > 1:
        ax.legend()
    fig.savefig(FIGURES / name, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
