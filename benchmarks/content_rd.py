"""Models against JPEG, WebP and AVIF on photos, illustrations and screen content.

For each content set (held-out photos, illustrations, generated screens: seeds from 1000,
which no training run renders), every model at every width and the 5 λ of `slimcodec
eval`, and the classical codecs on the same images in the same run: envelope BD-rate
against each classical codec and against the first model, ΔPSNR at equal rate, the rate
range and the top PSNR. With `--rate-control`, the first model's `--target-bpp` error on the
photos (median of |reached − target| / target over images and targets). With `--refine N`,
the first model again with its latents refined by N steps (`slimcodec compress --refine N`:
the same decoder, a slower encoder). Writes the RESULTS.md section ``content-rd-<name>``.

    python benchmarks/content_rd.py --models runs/x/model.pt slimcae-hp slimcae-vr5 \\
        [--count 8] [--crop 768x512] [--rate-control] [--refine 50] [--sets photos]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from common import classical_rd, fmt, load_test_images, parse_crop, table_head, write_section

from slimcodec.api import codec_for
from slimcodec.domains.screen import render_screen
from slimcodec.evaluate import evaluate
from slimcodec.rate_control import encode_to_target
from slimcodec.utils.rd import bd_rate, psnr_at_rate, rd_hull

CLASSICAL = ("JPEG 4:2:0", "WebP", "AVIF")
RATES = (0.1, 0.25, 0.5, 1.0, 1.5)
TARGETS = (0.1, 0.25, 0.5, 1.0)


def _safe(fn, *args):
    try:
        return fn(*args)
    except ValueError:
        return None


SETS = ("photos", "illustrations", "screens")


def content_sets(args) -> dict[str, list[tuple[str, np.ndarray]]]:
    crop = parse_crop(args.crop)
    w, h = crop
    load = {
        "photos": lambda: load_test_images(args.photos, crop)[: args.count],
        "illustrations": lambda: load_test_images(args.art, crop)[: args.count],
        "screens": lambda: [(f"screen-{1000 + i}", render_screen(1000 + i, (h, w)))
                            for i in range(args.count)],
    }
    return {name: load[name]() for name in args.sets}


def target_errors(model: str, images: list[tuple[str, np.ndarray]]) -> list[float]:
    codec = codec_for(model)
    errors = []
    for _, rgb in images:
        for target in TARGETS:
            try:
                # the cheapest width that reaches it, as the recorded runs searched
                data, _ = encode_to_target(codec, rgb, target_bpp=target, prefer="cost")
            except Exception:  # out of the model's reach on this image: not an error of control
                continue
            errors.append(abs(8 * len(data) / (rgb.shape[0] * rgb.shape[1]) - target) / target)
    return errors


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", required=True,
                   help="the first is measured against the others")
    p.add_argument("--photos", default="../shared/data/photos")
    p.add_argument("--art", default="../shared/data/art")
    p.add_argument("--count", type=int, default=8, help="images per content set")
    p.add_argument("--crop", default="768x512")
    p.add_argument("--rate-control", action="store_true")
    p.add_argument("--name", help="section suffix (default: the first model's name)")
    p.add_argument("--refine", type=int, default=0, metavar="STEPS",
                   help="also the first model with its latents refined by STEPS steps")
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    args = p.parse_args()
    sets = content_sets(args)
    name = args.name or Path(args.models[0]).stem
    # (label, model, refinement steps): the label is what the tables print.
    entries = [(Path(m).stem, m, 0) for m in args.models]
    if args.refine:
        entries.insert(1, (f"{entries[0][0]} --refine {args.refine}", args.models[0],
                           args.refine))
    lines, summary = [], {}
    for label, images in sets.items():
        rgbs = [rgb for _, rgb in images]
        envs, tops, spans = {}, {}, {}
        for model, path, steps in entries:
            points = evaluate(codec_for(path), rgbs, progress=False, refine=steps)["points"]
            envs[model] = rd_hull([(q["bpp"], q["psnr"]) for q in points])
            tops[model] = max(q["psnr"] for q in points)
            spans[model] = (min(q["bpp"] for q in points), max(q["bpp"] for q in points))
        hulls = {c: rd_hull(classical_rd(images, c)) for c in CLASSICAL}
        first_name = entries[0][0]
        rows = [table_head(["model", *(f"vs {c}" for c in CLASSICAL), f"vs {first_name}",
                            "range (bpp)", "top PSNR", *(f"ΔPSNR vs WebP @{r:g}" for r in RATES)])]
        for model, _, _ in entries:
            env = envs[model]
            versus = [fmt(_safe(bd_rate, hulls[c], env), "+.1f", "%") for c in CLASSICAL]
            first = ("—" if model == first_name else
                     fmt(_safe(bd_rate, env, envs[first_name]), "+.1f", "%"))
            gaps = []
            for r in RATES:
                a, b = _safe(psnr_at_rate, env, r), _safe(psnr_at_rate, hulls["WebP"], r)
                gaps.append(fmt(None if a is None or b is None else a - b, "+.2f"))
            rows.append(f"| `{model}` | {' | '.join(versus)} | {first} | "
                        f"{spans[model][0]:.3f}–{spans[model][1]:.3f} | {tops[model]:.2f} | "
                        f"{' | '.join(gaps)} |")
            summary[f"{label}/{model}"] = {
                "bd_vs_webp": _safe(bd_rate, hulls["WebP"], env), "top_psnr": tops[model],
                "span": spans[model]}
        lines.append(f"**{label}** ({len(images)}: {', '.join(n for n, _ in images)})\n\n"
                     + "\n".join(rows))
    text = "\n\n".join(lines)
    if args.rate_control and "photos" in sets:
        errors = target_errors(args.models[0], sets["photos"])
        median = 100 * float(np.median(errors)) if errors else None
        text += (f"\n\nRate control, `{name}` on the photos, `--target-bpp` {TARGETS} at the "
                 f"cheapest width that reaches each: median error **{fmt(median, '.2f', '%')}** "
                 f"over {len(errors)} reachable targets, largest "
                 f"{fmt(100 * max(errors) if errors else None, '.2f', '%')}.")
        summary["rate_control_median_error"] = median
    body = (f"### `{name}` on {', '.join(sets)}\n\nCentre crops {args.crop}; "
            "BD-rate of each model's envelope (every width, 5 λ each) against each codec's "
            "curve on the same images (negative: fewer bits); in the column named after the "
            f"first model, `{entries[0][0]}`'s BD-rate against the row's model (positive: "
            f"`{entries[0][0]}` needs more bits); ΔPSNR at equal rate against WebP, in "
            "dB.\n\n" + text)
    write_section(f"content-rd-{name}", body)
    print(body)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
