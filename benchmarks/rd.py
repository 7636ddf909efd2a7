"""RD of a slimcodec model (every width) against JPEG 4:2:0 / 4:4:4, WebP and AVIF.

BD-rate (log rate, PCHIP) of the model's curve against JPEG 4:2:0 and WebP; at each width, the
PSNR gap to each classical codec at the same rate (which still says something where the curves
share no PSNR range and BD-rate is n/a); an RD plot.
bpp counts every byte of every file (the slimcodec container's 40-byte header included).

    python benchmarks/rd.py --images runs/data/val --crop 768x512 --model slimcae
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from common import (
    CLASSICAL,
    FIGURES,
    classical_rd,
    fmt,
    load_test_images,
    model_rd,
    parse_crop,
    write_section,
)

from slimcodec.utils.rd import bd_rate, psnr_at_rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", required=True, help="folder of test images")
    ap.add_argument("--crop", default="768x512", help="centre crop WxH ('' for none)")
    ap.add_argument("--model", default="slimcae", help="registered name or model file")
    ap.add_argument("--label", default=None, help="name of the model in the results")
    ap.add_argument("--section", default="rd", help="RESULTS.md section to write")
    args = ap.parse_args()

    images = load_test_images(args.images, parse_crop(args.crop))
    label = args.label or args.model
    points = model_rd(args.model, images)
    curve = [(p["bpp"], p["psnr"]) for p in points]
    classical = {name: classical_rd(images, name) for name in CLASSICAL}

    rows = ["| width | bpp | PSNR (dB) | MS-SSIM | encode ms | decode ms | "
            + " | ".join(f"ΔPSNR vs {name}" for name in CLASSICAL) + " |",
            "|---:|---:|---:|---:|---:|---:|" + "---:|" * len(CLASSICAL)]
    for p in points:
        gaps = [psnr_at_rate(pts, p["bpp"]) for pts in classical.values()]
        rows.append(f"| {p['width']} | {p['bpp']:.4f} | {p['psnr']:.2f} | "
                    f"{fmt(p['ms_ssim'], '.4f')} | {p['enc_ms']:.0f} | {p['dec_ms']:.0f} | "
                    + " | ".join(fmt(None if g is None else p["psnr"] - g, "+.2f")
                                 for g in gaps) + " |")
    bd = {ref: bd_rate(classical[ref], curve) for ref in ("JPEG 4:2:0", "WebP")}
    classical_rows = ["| codec | quality | bpp | PSNR (dB) |", "|---|---:|---:|---:|"]
    for name, pts in classical.items():
        for q, (b, p) in zip(CLASSICAL[name][2], pts, strict=True):
            classical_rows.append(f"| {name} | {q} | {b:.4f} | {p:.2f} |")

    FIGURES.mkdir(exist_ok=True)
    figure = FIGURES / f"{args.section}.png"
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, pts in classical.items():
        ax.plot(*zip(*pts, strict=True), marker=".", label=name)
    ax.plot(*zip(*curve, strict=True), marker="o", lw=2, color="k", label=f"{label} (widths)")
    for p in points:
        ax.annotate(str(p["width"]), (p["bpp"], p["psnr"]), textcoords="offset points",
                    xytext=(4, -10), fontsize=8)
    ax.set(xlabel="bits per pixel", ylabel="PSNR (dB, RGB)",
           title=f"{len(images)} test images, {args.crop or 'full size'}")
    ax.set_xlim(0, max(2.0, max(b for b, _ in curve) * 1.1))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(figure, dpi=120)

    body = f"""## Rate-distortion: `{label}` against classical codecs

{len(images)} images ({', '.join(n for n, _ in images)}), centre crop {args.crop or 'none'}.
BD-rate of the model's curve (its widths as the RD points; negative is better):
against JPEG 4:2:0 **{fmt(bd['JPEG 4:2:0'], '+.1f', '%')}**, against WebP
**{fmt(bd['WebP'], '+.1f', '%')}** (n/a: the curves share no PSNR range).
ΔPSNR: the model's PSNR minus the codec's at the same bpp (interpolated over log rate; n/a
where the codec's qualities do not reach that rate); positive means the model is better.

{chr(10).join(rows)}

![RD plot](figures/{figure.name})

<details><summary>Classical codecs (Pillow)</summary>

{chr(10).join(classical_rows)}

</details>"""
    write_section(args.section, body)
    print(body)


if __name__ == "__main__":
    main()
