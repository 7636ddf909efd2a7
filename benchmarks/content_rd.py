"""Models against JPEG, WebP and AVIF on photos, illustrations and screen content.

For each content set (held-out photos, illustrations, generated screens: seeds from 1000,
which no training run renders), every model at every width and the 5 λ of `slimcodec
eval`, and the classical codecs on the same images in the same run: envelope BD-rate
against each classical codec and against the first model, ΔPSNR at equal rate, the rate
range and the top PSNR. With `--rate-control`, the first model's `--target-bpp` error on the
photos (median of |reached − target| / target over images and targets). With `--refine N`,
the first model again with its latents refined by N steps (`slimcodec compress --refine N`:
the same decoder, a slower encoder). Each model codes as `slimcodec compress` does: at the
scale it chooses per image and point (`--scale auto`; `--scale S` fixes one, `--scale 1`
the image's own size, as every run before 0.6 coded), a shipped model with shipped domain
adapters through its gate (`--domain auto`); with
`--without-adapters`, the first model again coded by the model alone (`--domain source`),
so that the table shows what its adapters buy and cost (encode and decode times: the mean
per file over every point, in this run); with `--without-palette`, the first model again
without the palette (`slimcodec compress --no-palette`), what it buys and costs. With
`--goals`, a table of the first model against each target issue 29 sets the default
model (:data:`GOALS`), met or not; it needs every content set, `--rate-control`, and
`slimcae-vr5` among the models. Writes the RESULTS.md
section ``content-rd-<name>``.

    python benchmarks/content_rd.py --models [LABEL=]runs/x/model.pt slimcae-hp slimcae-vr5 \\
        [--count 8] [--crop 768x512] [--rate-control] [--refine 50] [--sets photos]
    python benchmarks/content_rd.py --models slimcae-hp slimcae-vr5 \\
        --count 12 illustrations=6 screens=6 --rate-control --goals [--without-adapters] \\
        [--without-palette]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from common import (
    COMPARED,
    classical_rd,
    fmt,
    held_out_screens,
    load_test_images,
    parse_crop,
    table_head,
    write_section,
)

from slimcodec.api import codec_for
from slimcodec.evaluate import evaluate
from slimcodec.rate_control import encode_to_target
from slimcodec.scaling import AUTO, parse_scale
from slimcodec.utils.rd import bd_rate, psnr_at_rate, rd_hull

CLASSICAL = COMPARED
RATES = (0.1, 0.25, 0.5, 1.0, 1.5)
TARGETS = (0.1, 0.25, 0.5, 1.0)
#: Issue 29's targets for the default model: (content set, what, comparison, bound).
#: ``bd_vs_webp`` and ``bd_vs_vr5`` are BD-rates in %, ``top_psnr`` the top PSNR of the
#: envelope, ``widest_top`` the widest width's, ``low``/``high`` the rate range's ends (bpp),
#: ``rate_control`` the median ``--target-bpp`` error in %.
GOALS = (
    ("photos", "bd_vs_webp", "<=", 0.0),
    ("photos", "bd_vs_vr5", "<=", -25.0),
    ("illustrations", "bd_vs_webp", "<=", 20.0),
    ("screens", "bd_vs_webp", "<=", 50.0),
    ("screens", "top_psnr", ">=", 35.0),
    ("photos", "low", "<=", 0.08),
    ("photos", "high", ">=", 1.5),
    ("photos", "widest_top", ">=", 40.0),
    ("photos", "rate_control", "<=", 1.0),
)
_GOAL_UNITS = {"bd_vs_webp": ("BD-rate vs WebP", "%"), "bd_vs_vr5": ("BD-rate vs slimcae-vr5", "%"),
               "top_psnr": ("top PSNR", " dB"), "widest_top": ("widest width's top PSNR", " dB"),
               "low": ("lowest rate", " bpp"), "high": ("highest rate", " bpp"),
               "rate_control": ("`--target-bpp` median error", "%")}


def _safe(fn, *args):
    try:
        return fn(*args)
    except ValueError:
        return None


SETS = ("photos", "illustrations", "screens")


def judge_goals(measured: dict[tuple[str, str], float | None]) -> list[tuple[str, str, bool]]:
    """Each of :data:`GOALS` as (goal, measured, met) from ``measured[(set, what)]``.

    A value that could not be measured counts as not met: a BD-rate against WebP is missing
    when the two curves share no PSNR range, which on screens means the model never reaches
    WebP's quality.
    """
    rows = []
    for content, what, op, bound in GOALS:
        label, unit = _GOAL_UNITS[what]
        value = measured.get((content, what))
        met = value is not None and (value <= bound if op == "<=" else value >= bound)
        # A BD-rate is signed; an error, a rate or a PSNR is not.
        shown = "n/a" if value is None else f"{value:+.1f}{unit}" if what.startswith("bd") else (
            f"{value:.1f}{unit}" if unit == "%" else
            f"{value:.3f}{unit}" if unit == " bpp" else f"{value:.2f}{unit}")
        rows.append((f"{content}: {label} {op.replace('<=', '≤').replace('>=', '≥')} "
                     f"{bound:g}{unit}", shown, met))
    return rows


def goals_table(first: str, summary: dict) -> str:
    """:func:`judge_goals` on what :func:`main` measured, as a markdown table."""
    measured: dict[tuple[str, str], float | None] = {}
    for content in SETS:
        row = summary[f"{content}/{first}"]
        measured.update({(content, "bd_vs_webp"): row["bd_vs_webp"],
                         (content, "top_psnr"): row["top_psnr"],
                         (content, "widest_top"): row["widest_top"],
                         (content, "low"): row["span"][0], (content, "high"): row["span"][1]})
    measured["photos", "bd_vs_vr5"] = summary["photos/slimcae-vr5"]["first_vs_this"]
    measured["photos", "rate_control"] = summary["rate_control_median_error"]
    rows = judge_goals(measured)
    lines = [f"**Issue 29's targets**, `{first}`: {sum(met for *_, met in rows)} of "
             f"{len(rows)} met.", "", table_head(["target", "measured", "met"])]
    lines += [f"| {goal} | {shown} | {'yes' if met else '**no**'} |" for goal, shown, met in rows]
    return "\n".join(lines)


def content_sets(args) -> dict[str, list[tuple[str, np.ndarray]]]:
    crop, count = parse_crop(args.crop), args.count
    load = {
        "photos": lambda: load_test_images(args.photos, crop)[: count["photos"]],
        "illustrations": lambda: load_test_images(args.art, crop)[: count["illustrations"]],
        "screens": lambda: held_out_screens(count["screens"], crop),
    }
    return {name: load[name]() for name in args.sets}


def parse_counts(values: list[str]) -> dict[str, int]:
    """``--count``: ``N`` for every set, ``SET=N`` for one (``12 screens=6``)."""
    counts = dict.fromkeys(SETS, 8)
    for value in values:
        name, _, n = value.rpartition("=")
        if name and name not in SETS:
            raise ValueError(f"--count {value}: no content set {name!r} (one of {SETS})")
        if not n.isdigit() or int(n) < 1:
            raise ValueError(f"--count {value}: not a positive number of images")
        counts.update({name: int(n)} if name else dict.fromkeys(SETS, int(n)))
    return counts


def labelled(model: str) -> tuple[str, str]:
    """``--models`` entry -> (its label in the tables, the model): ``LABEL=MODEL``, or a
    registered name or file named by itself (a file by its stem)."""
    label, sep, path = model.partition("=")
    if sep and label and path and not Path(model).exists():
        return label, path
    return Path(model).stem, model


def target_errors(model: str, images: list[tuple[str, np.ndarray]], scale) -> list[float]:
    codec = codec_for(model)
    errors = []
    for _, rgb in images:
        for target in TARGETS:
            try:
                # the cheapest width that reaches it, as the recorded runs searched
                data, _ = encode_to_target(codec, rgb, target_bpp=target, prefer="cost",
                                           domain=codec.default_domain, scale=scale)
            except Exception:  # out of the model's reach on this image: not an error of control
                continue
            errors.append(abs(8 * len(data) / (rgb.shape[0] * rgb.shape[1]) - target) / target)
    return errors


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", required=True, metavar="[LABEL=]MODEL",
                   help="the first is measured against the others; LABEL names a model file "
                        "in the tables (default: the file's stem)")
    p.add_argument("--photos", default="../shared/data/photos")
    p.add_argument("--art", default="../shared/data/art")
    p.add_argument("--count", nargs="+", default=["8"], metavar="[SET=]N",
                   help="images per content set: N for all, SET=N for one (default: 8)")
    p.add_argument("--crop", default="768x512")
    p.add_argument("--rate-control", action="store_true")
    p.add_argument("--name", help="section suffix (default: the first model's name)")
    p.add_argument("--refine", type=int, default=0, metavar="STEPS",
                   help="also the first model with its latents refined by STEPS steps")
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    p.add_argument("--without-adapters", action="store_true",
                   help="also the first model coded by the model alone (--domain source), "
                        "without the adapters it ships with")
    p.add_argument("--without-palette", action="store_true",
                   help="also the first model coded without the palette (--no-palette)")
    p.add_argument("--scale", type=parse_scale, default=AUTO,
                   help="the scale every model codes at: auto (as compress, the default) or "
                        "a factor (1: the image's own size)")
    p.add_argument("--goals", action="store_true",
                   help="judge the first model against issue 29's targets (see above)")
    args = p.parse_args()
    models = [labelled(m) for m in args.models]
    try:
        args.count = parse_counts(args.count)
    except ValueError as e:
        p.error(str(e))
    if args.goals and (set(args.sets) != set(SETS) or not args.rate_control
                       or "slimcae-vr5" not in [label for label, _ in models[1:]]):
        p.error("--goals needs every content set, --rate-control and slimcae-vr5 in --models")
    sets = content_sets(args)
    name = args.name or models[0][0]
    # (label, model, refinement steps, domain, palette): the label is what the tables print;
    # domain None codes as `slimcodec compress` does (Codec.default_domain).
    entries = [(label, model, 0, None, True) for label, model in models]
    if args.refine:
        entries.insert(1, (f"{entries[0][0]} --refine {args.refine}", models[0][1],
                           args.refine, None, True))
    if args.without_adapters:
        entries.insert(1, (f"{entries[0][0]} --domain source", models[0][1], 0, "source",
                           True))
    if args.without_palette:
        entries.insert(1, (f"{entries[0][0]} --no-palette", models[0][1], 0, None, False))
    lines, summary = [], {}
    for label, images in sets.items():
        rgbs = [rgb for _, rgb in images]
        envs, tops, spans, widest_tops, times = {}, {}, {}, {}, {}
        for model, path, steps, domain, palette in entries:
            points = evaluate(codec_for(path), rgbs, progress=False, refine=steps,
                              domain=domain, scale=args.scale, palette=palette)["points"]
            times[model] = tuple(float(np.mean([q[k] for q in points]))
                                 for k in ("enc_ms", "dec_ms"))
            envs[model] = rd_hull([(q["bpp"], q["psnr"]) for q in points])
            tops[model] = max(q["psnr"] for q in points)
            widest = max(q["width"] for q in points)
            widest_tops[model] = max(q["psnr"] for q in points if q["width"] == widest)
            spans[model] = (min(q["bpp"] for q in points), max(q["bpp"] for q in points))
        hulls = {c: rd_hull(classical_rd(images, c)) for c in CLASSICAL}
        first_name = entries[0][0]
        rows = [table_head(["model", *(f"vs {c}" for c in CLASSICAL), f"vs {first_name}",
                            "range (bpp)", "top PSNR", *(f"ΔPSNR vs WebP @{r:g}" for r in RATES),
                            "encode / decode ms"])]
        for model, *_ in entries:
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
                        f"{' | '.join(gaps)} | {times[model][0]:,.0f} / {times[model][1]:,.0f} |")
            summary[f"{label}/{model}"] = {
                "bd_vs_webp": _safe(bd_rate, hulls["WebP"], env), "top_psnr": tops[model],
                "widest_top": widest_tops[model], "span": spans[model],
                "first_vs_this": _safe(bd_rate, env, envs[first_name]),
                "enc_ms": times[model][0], "dec_ms": times[model][1]}
        lines.append(f"**{label}** ({len(images)}: {', '.join(n for n, _ in images)})\n\n"
                     + "\n".join(rows))
    text = "\n\n".join(lines)
    if args.rate_control and "photos" in sets:
        errors = target_errors(models[0][1], sets["photos"], args.scale)
        median = 100 * float(np.median(errors)) if errors else None
        text += (f"\n\nRate control, `{name}` on the photos, `--target-bpp` {TARGETS} at the "
                 f"cheapest width that reaches each: median error **{fmt(median, '.2f', '%')}** "
                 f"over {len(errors)} reachable targets, largest "
                 f"{fmt(100 * max(errors) if errors else None, '.2f', '%')}.")
        summary["rate_control_median_error"] = median
    if args.goals:
        text += "\n\n" + goals_table(entries[0][0], summary)
    body = (f"### `{name}` on {', '.join(sets)}\n\nCentre crops {args.crop}; "
            "BD-rate of each model's envelope (every width, 5 λ each) against each codec's "
            "curve on the same images (negative: fewer bits); in the column named after the "
            f"first model, `{entries[0][0]}`'s BD-rate against the row's model (positive: "
            f"`{entries[0][0]}` needs more bits); ΔPSNR at equal rate against WebP, in "
            "dB; PSNR: the mean over the images, an image decoded exactly (exact blocks "
            "can make a screen's file lossless) counted at 60 dB "
            "(`slimcodec.utils.metrics.MEAN_PSNR_CEILING`), as in `slimcodec eval`; "
            "encode / decode ms: the mean per file over every point, times of this run "
            "(its machine below). Models code as `slimcodec compress` does (a shipped "
            "model's adapters through its gate, `--domain auto`), "
            + ("at the scale it chooses per image and point (`--scale auto`)"
               if args.scale == AUTO else f"at scale {args.scale:g} (`--scale`)")
            + ".\n\n" + text)
    write_section(f"content-rd-{name}", body)
    print(body)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
