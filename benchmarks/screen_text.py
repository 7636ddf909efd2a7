"""Screens with aliased, grayscale anti-aliased and subpixel (ClearType-like) text: what
the palette and its exact blocks buy and cost, each group apart.

Aliased text is drawn in a theme's few colours, anti-aliased text blends them into
hundreds (grayscale: along the line between ink and background; subpixel: each of red,
green and blue its own blend, so stems get coloured fringes off that line); the palette
(`slimcodec.palette`) holds the most frequent colours 8 levels apart, and its exact
blocks (`slimcodec.index_map`) decode the one exactly and paint the others' blends in
their nearest colours, so the groups gain unlike. Screens from seed 1000 on (held out
from every training run): the first `--count` whose text is aliased, and the first
`--count` whose text is anti-aliased (`slimcodec.domains.screen.antialiased`), drawn
once with grayscale and once with subpixel text (the same layouts), coded by a model
at `--widths` (default: the widest) and the 5 λ of `slimcodec eval`, as `slimcodec
compress` codes them and again with `--no-palette`, in one run beside JPEG, WebP and AVIF
on the same images: BD-rate against each, ΔPSNR at equal rate against WebP, the rate
range and top PSNR (a mean over the images, an exact image counted at 60 dB), the encode
and decode times, and their ratios to `--no-palette`'s. Writes the RESULTS.md section
``screen-text-<model>``.

    python benchmarks/screen_text.py [--model slimcae-hpc] [--count 4] [--widths 192]
"""

from __future__ import annotations

import argparse

import numpy as np
from common import COMPARED, classical_rd, fmt, table_head, write_section

from slimcodec.api import codec_for
from slimcodec.domains.screen import TEXT, antialiased, render_screen
from slimcodec.evaluate import evaluate
from slimcodec.utils.rd import bd_rate, psnr_at_rate, rd_hull

RATES = (0.25, 0.5, 1.0)
FIRST_SEED = 1000


def screens(count: int, text: str, size: tuple[int, int]) -> list[tuple[str, np.ndarray]]:
    """The first ``count`` screens from :data:`FIRST_SEED` whose text is aliased, or (for
    ``grayscale`` and ``subpixel``) anti-aliased, drawn with ``text``."""
    out, seed = [], FIRST_SEED
    while len(out) < count:
        if antialiased(seed) == (text != "aliased"):
            out.append((f"screen-{seed}", render_screen(seed, size, text=text)))
        seed += 1
    return out


def _safe(fn, *args):
    try:
        return fn(*args)
    except ValueError:
        return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="slimcae-hpc")
    p.add_argument("--count", type=int, default=4, help="screens of each kind")
    p.add_argument("--widths", type=int, nargs="+", help="default: the model's widest")
    p.add_argument("--size", default="768x512", help="WIDTHxHEIGHT")
    args = p.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    codec = codec_for(args.model)
    widths = args.widths or [max(codec.widths)]
    sections = []
    for text in TEXT:
        images = screens(args.count, text, (h, w))
        rgbs = [rgb for _, rgb in images]
        hulls = {c: rd_hull(classical_rd(images, c)) for c in COMPARED}
        runs = {}
        for label, palette in (("as compress codes", True), ("--no-palette", False)):
            points = evaluate(codec, rgbs, widths=widths, progress=False,
                              palette=palette)["points"]
            runs[label] = (rd_hull([(q["bpp"], q["psnr"]) for q in points]),
                           (min(q["bpp"] for q in points), max(q["bpp"] for q in points)),
                           max(q["psnr"] for q in points),
                           tuple(float(np.mean([q[k] for q in points]))
                                 for k in ("enc_ms", "dec_ms")))
        plain = runs["--no-palette"]
        rows = [table_head(["coded", *(f"vs {c}" for c in COMPARED), "vs --no-palette",
                            "range (bpp)", "top PSNR",
                            *(f"ΔPSNR vs WebP @{r:g}" for r in RATES),
                            "encode / decode ms", "time vs --no-palette"])]
        for label, (env, span, top, (enc, dec)) in runs.items():
            versus = [fmt(_safe(bd_rate, hulls[c], env), "+.1f", "%") for c in COMPARED]
            own = "—" if label == "--no-palette" else fmt(_safe(bd_rate, plain[0], env),
                                                         "+.1f", "%")
            gaps = []
            for r in RATES:
                a, b = _safe(psnr_at_rate, env, r), _safe(psnr_at_rate, hulls["WebP"], r)
                gaps.append(fmt(None if a is None or b is None else a - b, "+.2f"))
            ratio = (f"{enc / plain[3][0]:.2f}x / {dec / plain[3][1]:.2f}x"
                     if label != "--no-palette" else "—")
            rows.append(f"| {label} | {' | '.join(versus)} | {own} | {span[0]:.3f}–"
                        f"{span[1]:.3f} | {top:.2f} | {' | '.join(gaps)} | "
                        f"{enc:,.0f} / {dec:,.0f} | {ratio} |")
        sections.append(f"**{text} text** ({len(images)}: "
                        f"{', '.join(n for n, _ in images)})\n\n" + "\n".join(rows))
    body = (f"## Screens by their text: `{args.model}`, width {', '.join(map(str, widths))}\n\n"
            f"Generated screens {w}x{h} from seed {FIRST_SEED}, the first {args.count} whose "
            f"text is aliased and the first {args.count} whose text is anti-aliased, these "
            "drawn with grayscale and again with subpixel (ClearType-like) text, at the "
            "5 λ of "
            "`slimcodec eval`: as `slimcodec compress` codes them (palette and exact blocks "
            "where they pay) and with `--no-palette`; BD-rate of each curve's hull against "
            "the codecs' on the same images in this run (negative: fewer bits), and "
            "against `--no-palette`'s; ΔPSNR at equal rate against WebP, in dB; PSNR a "
            "mean over the images, an image decoded exactly counted at 60 dB; times: the "
            "mean per file, and their ratios to `--no-palette`'s in this run.\n\n"
            + "\n\n".join(sections))
    write_section(f"screen-text-{args.model}", body)
    print(body)


if __name__ == "__main__":
    main()
