"""λ-scheduling against equal λ: the RD points of two SlimCAEs trained alike except for λ.

Reports both sets of points, the bpp span their widths cover (highest / lowest rate), and
the BD-rate of the RD hull (lower convex hull in distortion) of the scheduled model's
points against that of the equal-λ model.

    python benchmarks/lambda_scheduling.py --images runs/data/val \
        --scheduled runs/default/model.pt --equal runs/equal-lambda/model.pt
"""

from __future__ import annotations

import argparse

from common import FIGURES, fmt, load_test_images, model_rd, parse_crop, plot_curves, write_section

from slimcodec.utils.rd import bd_rate, bpp_span, rd_hull
from slimcodec.zoo import model_meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", required=True)
    ap.add_argument("--crop", default="768x512")
    ap.add_argument("--scheduled", required=True)
    ap.add_argument("--equal", required=True)
    args = ap.parse_args()

    images = load_test_images(args.images, parse_crop(args.crop))
    runs = {"λ-scheduled": args.scheduled, "equal λ": args.equal}
    points = {label: model_rd(model, images) for label, model in runs.items()}
    curves = {label: [(p["bpp"], p["psnr"]) for p in pts] for label, pts in points.items()}
    hulls = {label: rd_hull(c) for label, c in curves.items()}
    try:
        bd = bd_rate(hulls["equal λ"], hulls["λ-scheduled"])
    except ValueError:  # a hull of a single point
        bd = None

    rows = ["| model | width | λ | bpp | PSNR (dB) |", "|---|---:|---:|---:|---:|"]
    for label, model in runs.items():
        lambdas = model_meta(model).get("lambdas") or ["?"] * len(points[label])
        for p, lam in zip(points[label], lambdas, strict=True):
            lam = f"{lam:.5f}" if isinstance(lam, float) else lam
            rows.append(f"| {label} | {p['width']} | {lam} | {p['bpp']:.4f} | {p['psnr']:.2f} |")
    spans = {label: bpp_span(c) for label, c in curves.items()}
    figure = FIGURES / "lambda_scheduling.png"
    plot_curves(curves, figure, "λ-scheduling against equal λ")
    body = f"""## λ-scheduling against equal λ

{len(images)} images, centre crop {args.crop or 'none'}. bpp span of the widths
(highest / lowest rate): λ-scheduled **{spans['λ-scheduled']:.2f}×**, equal λ
**{spans['equal λ']:.2f}×**. BD-rate of the λ-scheduled RD hull against the equal-λ hull:
**{fmt(bd, '+.1f', '%')}** (negative: scheduling is better; n/a: no shared PSNR range).

{chr(10).join(rows)}

![λ-scheduling](figures/{figure.name})"""
    write_section("lambda_scheduling", body)
    print(body)


if __name__ == "__main__":
    main()
