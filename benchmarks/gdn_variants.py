"""SwitchGDN, SlimGDN and SlimGDN+ trained alike: which measures best?

Trains one SlimCAE per GDN variant with the same recipe, seed and data (short runs: this
is a screening, not the paper's experiment), then reports each one's RD points on the test
images, the BD-rate of each curve against SlimGDN's, and each one's RD loss on the test
images: the training objective, mean over widths of λ·255²·MSE + bpp. Trained at one λ, the
widths' points bunch together and the curves of two variants often share no PSNR range, so
the BD-rate is often n/a; the RD loss always compares.

    python benchmarks/gdn_variants.py --data runs/data/train --images runs/data/val \
        --steps 1500 --widths 96 72 48
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import (
    FIGURES,
    fmt,
    load_test_images,
    model_rd,
    parse_crop,
    plot_curves,
    rd_loss,
    write_section,
)

from slimcodec.training import TrainConfig, train
from slimcodec.utils.rd import bd_rate

VARIANTS = {"switch": "SwitchGDN", "slim": "SlimGDN", "slim+": "SlimGDN+"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--crop", default="768x512")
    ap.add_argument("--runs", default="runs/gdn")
    ap.add_argument("--widths", type=int, nargs="+", default=[96, 72, 48])
    ap.add_argument("--lambdas", type=float, nargs="+", default=[0.013])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args()

    images = load_test_images(args.images, parse_crop(args.crop))
    curves, points = {}, {}
    for variant, label in VARIANTS.items():
        out = Path(args.runs) / variant.replace("+", "plus")
        cfg = TrainConfig(data=args.data, out=str(out), widths=args.widths,
                          lambdas=args.lambdas, gdn=variant, steps=args.steps,
                          patch=args.patch, batch=args.batch, lr=args.lr,
                          checkpoint_every=250)
        train(cfg, resume=True)
        points[label] = model_rd(str(out / "model.pt"), images)
        curves[label] = [(p["bpp"], p["psnr"]) for p in points[label]]

    lambdas = cfg.lambdas  # one per width, as TrainConfig spreads them
    rows = ["| GDN | " + " | ".join(f"width {w} bpp / PSNR" for w in args.widths)
            + " | BD-rate vs SlimGDN | RD loss |", "|---|" + "---:|" * (len(args.widths) + 2)]
    for label, pts in points.items():
        cells = " | ".join(f"{p['bpp']:.3f} / {p['psnr']:.2f}" for p in pts)
        try:
            bd = bd_rate(curves["SlimGDN"], curves[label])
        except ValueError:
            bd = None
        rows.append(f"| {label} | {cells} | {fmt(bd, '+.1f', '%')} "
                    f"| {rd_loss(lambdas, pts):.4f} |")
    figure = FIGURES / "gdn_variants.png"
    plot_curves(curves, figure, "GDN variants")
    body = f"""## GDN variants

Three SlimCAEs (widths {', '.join(map(str, args.widths))}) trained alike, {args.steps} steps each
(patch {args.patch}, batch {args.batch}, lr {args.lr}, λ {args.lambdas}), evaluated on
{len(images)} images, centre crop {args.crop or 'none'}.

{chr(10).join(rows)}

RD loss: mean over the widths of λ·255²·MSE + bpp on the test images (the training
objective; lower is better).

![GDN variants](figures/{figure.name})"""
    write_section("gdn_variants", body)
    print(body)
    (Path(args.runs) / "summary.json").write_text(json.dumps(curves, indent=2))


if __name__ == "__main__":
    main()
