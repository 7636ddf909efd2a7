"""Slimming penalty: a SlimCAE's widths against single-width models trained alone.

Each single-width model has the same width and λ as one of the SlimCAE's widths and was
trained with the same data and steps (see benchmarks/train_default.sh). Reports the
BD-rate of the SlimCAE curve against the single-width curve and the gap at each width.

    python benchmarks/slimming_penalty.py --images runs/data/val --slim runs/default/model.pt \
        --single runs/single-192/model.pt runs/single-144/model.pt ...
"""

from __future__ import annotations

import argparse

from common import FIGURES, fmt, load_test_images, model_rd, parse_crop, plot_curves, write_section

from slimcodec.utils.rd import bd_rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", required=True)
    ap.add_argument("--crop", default="768x512")
    ap.add_argument("--slim", required=True, help="the slimmable model (name or file)")
    ap.add_argument("--single", nargs="+", required=True, help="single-width model files")
    args = ap.parse_args()

    images = load_test_images(args.images, parse_crop(args.crop))
    slim = {p["width"]: p for p in model_rd(args.slim, images)}
    single = {}
    for path in args.single:
        (p,) = model_rd(path, images)
        single[p["width"]] = p
    widths = [w for w in slim if w in single]
    slim_curve = [(slim[w]["bpp"], slim[w]["psnr"]) for w in widths]
    single_curve = [(single[w]["bpp"], single[w]["psnr"]) for w in widths]
    bd = bd_rate(single_curve, slim_curve)

    rows = ["| width | SlimCAE bpp | SlimCAE PSNR | single bpp | single PSNR | PSNR gap (dB) |",
            "|---:|---:|---:|---:|---:|---:|"]
    for w in widths:
        s, r = slim[w], single[w]
        rows.append(f"| {w} | {s['bpp']:.4f} | {s['psnr']:.2f} | {r['bpp']:.4f} | "
                    f"{r['psnr']:.2f} | {s['psnr'] - r['psnr']:+.2f} |")
    figure = FIGURES / "slimming_penalty.png"
    plot_curves({"SlimCAE (one model)": slim_curve, "single-width models": single_curve},
                figure, "Slimming penalty")
    body = f"""## Slimming penalty

{len(images)} images, centre crop {args.crop or 'none'}. BD-rate of the SlimCAE curve against
the curve of the {len(widths)} independently trained single-width models:
**{fmt(bd, '+.1f', '%')}** (positive: the shared weights cost rate). The PSNR gap compares
the two models at the same width, so their rates differ too.

{chr(10).join(rows)}

![slimming penalty](figures/{figure.name})"""
    write_section("slimming_penalty", body)
    print(body)


if __name__ == "__main__":
    main()
