"""Coding an image at a higher resolution (``--scale``): what it buys and costs.

Every shipped model's quality stops near 35.4 dB on photos and 27 dB on screens at any
rate (`latent_capacity.py`: the transforms' ceiling). Its latent holds ``width`` values per
16×16 pixels, so an image upsampled by ``s`` before the encoder and downsampled back after
the decoder gets ``s²`` times the latent values per pixel of the original, for ``s²`` times
the transforms' work (:mod:`slimcodec.scaling`). This codes each held-out photo (and
generated screen) at each scale as ``slimcodec compress --scale S`` does (through the
model's gate, real files: the header's coded size counted), at one width (default: the
widest) and the 5 λ of ``slimcodec eval``; PSNR against the original, bits per pixel of
the original; JPEG, WebP and AVIF on the same images in the same run. A scale written
``S:FILTER`` resamples with that filter (``--resampling``; default ``lanczos``); ``auto``
codes as ``slimcodec compress`` does unless told a scale, choosing it per image and λ
(:func:`slimcodec.scaling.choose_scale`). Writes the RESULTS.md section
``resampled-coding-<model>`` (``--name``: another suffix).

``--targets``: also ``slimcodec compress --target-bpp R`` at the same width for each scale
setting, at each rate of the ΔPSNR columns: the PSNR each reached at that rate (means over
the images every setting reached it on), beside WebP's at the same rate (interpolated on
its curve), the encoder's passes and its time per file (the search's every pass). That is
where ``auto``'s choice of scale for a target shows (:func:`slimcodec.rate_control.
encode_to_target`): ``1`` is the image's own size whatever the rate.

    python benchmarks/resampled_coding.py [--model slimcae-hpc] [--scales 1 1.5 2 2:box auto] \\
        [--count 12] [--screens 6] [--width 192] [--crop 768x512] [--targets] [--name SUFFIX]
"""

from __future__ import annotations

import argparse
import time

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
from slimcodec.errors import RateError
from slimcodec.evaluate import evaluate
from slimcodec.rate_control import encode_to_target
from slimcodec.scaling import AUTO, FILTERS, coded_size, parse_scale, resample, upsample
from slimcodec.utils.metrics import psnr
from slimcodec.utils.rd import bd_rate, psnr_at_rate, rd_hull

RATES = (0.25, 0.5, 1.0, 1.5)


def scale_curve(codec, images, width: int, scale, resampling: str
                ) -> tuple[list, float, float]:
    """Mean (bpp, PSNR) per λ of ``slimcodec eval`` (:func:`~slimcodec.evaluate.evaluate`,
    as ``slimcodec eval --scale`` codes), and the mean encode and decode ms per file."""
    points = evaluate(codec, [rgb for _, rgb in images], [width], progress=False,
                      scale=scale, resampling=resampling)["points"]
    return ([(p["bpp"], p["psnr"]) for p in points],
            float(np.mean([p["enc_ms"] for p in points])),
            float(np.mean([p["dec_ms"] for p in points])))


def round_trip(images, scale: float, resampling: str) -> str:
    """The resampling alone: mean (and lowest) PSNR of each image upsampled to ``scale``'s
    coded size and resized back as the decoder does, from the plain upsampling → from the
    encoder's (:func:`~slimcodec.scaling.upsample`, back-projected): the ceiling each puts
    on a file coded from it; and the upsampling's mean ms per image, each way."""
    got, ms = {}, {}
    for steps in (0, None):
        got[steps], ms[steps] = [], []
        for _, rgb in images:
            start = time.perf_counter()
            up = upsample(rgb, coded_size(*rgb.shape[:2], scale), resampling, steps)
            ms[steps].append(1000 * (time.perf_counter() - start))
            got[steps].append(psnr(rgb, resample(up, rgb.shape[:2], FILTERS[resampling][1])))
    if all(np.isinf(v) for v in got[0]):
        return "exact"
    return (f"{np.mean(got[0]):.1f} → {np.mean(got[None]):.1f} "
            f"(lowest {min(got[0]):.1f} → {min(got[None]):.1f}); "
            f"{np.mean(ms[0]):.0f} → {np.mean(ms[None]):.0f} ms")


def set_table(name: str, images, curves: dict[str, list], times: dict[str, tuple],
              trips: dict[str, str]) -> str:
    ref = {c: classical_rd(images, c) for c in COMPARED}
    native = curves[next(iter(curves))]
    rows = []
    for label, pts in curves.items():
        bd = [fmt(bd_rate(ref[c], pts), "+.1f", "%") for c in COMPARED]
        against = "—" if pts is native else fmt(bd_rate(native, pts), "+.1f", "%")
        deltas = []
        for r in RATES:
            ours, webp = psnr_at_rate(pts, r), psnr_at_rate(ref["WebP"], r)
            deltas.append(fmt(None if ours is None or webp is None else ours - webp, "+.2f"))
        enc, dec = times.get(label, (None, None))
        rows.append(f"| {label} | " + " | ".join(bd) + f" | {against} | "
                    f"{min(b for b, _ in pts):.3f}–{max(b for b, _ in pts):.3f} | "
                    f"{max(p for _, p in pts):.2f} | " + " | ".join(deltas)
                    + f" | {fmt(enc, '.0f')} | {fmt(dec, '.0f')} | {trips.get(label, '—')} |")
    head = table_head(["coded at", *(f"vs {c}" for c in COMPARED), "vs ×1", "range (bpp)",
                       "top PSNR", *(f"ΔPSNR vs WebP @{r}" for r in RATES), "encode ms",
                       "decode ms", "resampling alone (dB)"])
    return (f"**{name}** ({len(images)}: {', '.join(n for n, _ in images)})\n\n{head}\n"
            + "\n".join(rows))


def target_runs(codec, images, width: int, scale, resampling: str) -> dict[float, list]:
    """Per rate of :data:`RATES`, per image: (PSNR, bpp, encoder passes, encode ms) of
    ``--target-bpp`` at ``width`` (through the model's gate, as compress codes), or None
    where the target is out of reach at that scale."""
    runs: dict[float, list] = {}
    for rate in RATES:
        runs[rate] = []
        for _, rgb in images:
            start = time.perf_counter()
            try:
                data, search = encode_to_target(codec, rgb, target_bpp=rate, width=width,
                                                domain=codec.default_domain, scale=scale,
                                                resampling=resampling)
            except RateError:
                runs[rate].append(None)
                continue
            ms = 1000 * (time.perf_counter() - start)
            # auto's search decoded its file to weigh the scales; others did not
            quality = (search.psnr if search.psnr is not None
                       else psnr(rgb, codec.decode_rgb(data)[0]))
            runs[rate].append((quality,
                               8 * len(data) / (rgb.shape[0] * rgb.shape[1]),
                               len(search.tried), ms))
    return runs


def target_table(images, runs: dict[str, dict[float, list]]) -> str:
    """PSNR at each target rate per scale setting, on the images every setting reached it
    on, beside WebP's at that rate."""
    webp = [classical_rd([image], "WebP") for image in images]
    rows = []
    for rate in RATES:
        kept = [i for i in range(len(images)) if all(r[rate][i] for r in runs.values())]
        cells = []
        for by_rate in runs.values():
            got = [by_rate[rate][i] for i in kept]
            cells.append("n/a" if not got else
                         f"{np.mean([g[0] for g in got]):.2f} dB "
                         f"({np.mean([abs(g[1] / rate - 1) for g in got]) * 100:.2f}%, "
                         f"{np.mean([g[2] for g in got]):.1f} passes, "
                         f"{np.mean([g[3] for g in got]):,.0f} ms)")
        ref = [psnr_at_rate(webp[i], rate) for i in kept]
        ref = [v for v in ref if v is not None]
        rows.append(f"| {rate:g} | {len(kept)} | " + " | ".join(cells)
                    + f" | {fmt(np.mean(ref) if ref else None, '.2f')} |")
    head = table_head(["target bpp", "images", *(f"{label}: PSNR (rate error, passes, "
                                                 "encode)" for label in runs),
                       "WebP at that rate (dB)"])
    return head + "\n" + "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="slimcae-hpc")
    p.add_argument("--scales", nargs="+", default=["1", "1.5", "2", "2:box"],
                   help="S or S:FILTER (lanczos, box), or auto (the scale compress chooses "
                        "per image and λ)")
    p.add_argument("--count", type=int, default=12, help="held-out photos")
    p.add_argument("--screens", type=int, default=6, help="held-out generated screens")
    p.add_argument("--width", type=int, help="default: the widest")
    p.add_argument("--crop", default="768x512")
    p.add_argument("--photos", default="../shared/data/photos")
    p.add_argument("--targets", action="store_true",
                   help="also --target-bpp at each rate of the ΔPSNR columns, per scale")
    p.add_argument("--name", help="section suffix (default: the model's name)")
    args = p.parse_args()
    scales = [(parse_scale(v.split(":")[0]), [*v.split(":"), "lanczos"][1]) for v in args.scales]
    if scales[0] != (1, "lanczos"):
        p.error("--scales starts with 1: the model as it codes today, the row others are "
                "measured against")
    crop = parse_crop(args.crop)
    codec = codec_for(args.model)
    width = codec.resolve_width(args.width or max(codec.widths))
    sets = {"photos": load_test_images(args.photos, crop)[:args.count]}
    if args.screens:
        sets["screens"] = held_out_screens(args.screens, crop)
    tables = []
    for name, images in sets.items():
        curves, times, targets, trips = {}, {}, {}, {}
        for s, resampling in scales:
            label = "auto" if s == AUTO else f"×{s:g}" + (
                f" {resampling}" if s != 1 and resampling != "lanczos" else "")
            curves[label], *times[label] = scale_curve(codec, images, width, s, resampling)
            if s not in (AUTO, 1):
                trips[label] = round_trip(images, s, resampling)
            print(name, label, [(round(b, 3), round(q, 2)) for b, q in curves[label]],
                  flush=True)
            if args.targets:
                targets[label] = target_runs(codec, images, width, s, resampling)
                print(name, label, "targets", targets[label], flush=True)
        curves["envelope"] = rd_hull([pt for label, c in curves.items() if label != "auto"
                                      for pt in c])
        tables.append(set_table(name, images, curves, times, trips))
        if targets:
            tables.append(f"`--target-bpp` on the {name}, width {width}:\n\n"
                          + target_table(images, targets))
    body = (
        f"## Coding at a higher resolution: `{args.model}`, width {width}\n\n"
        f"Each image coded as `slimcodec compress --scale S` codes it (upsampled by S "
        f"with Pillow's Lanczos filter, back-projected, or `box`: `--resampling box`, nearest "
        f"up and area down; through the gate, real files; the decoder resamples back) at "
        f"the 5 λ of `slimcodec eval`; PSNR against the original, "
        f"bits per pixel of the original, means over the images per λ. `envelope`: the "
        f"convex hull of every scale's points, what a coder choosing the scale per rate "
        f"would reach; `auto`, where measured, what `--scale auto` (compress's default) "
        f"reaches by choosing it per image and λ. `vs ×1`: "
        f"BD-rate against the model at the image's own size (n/a where the curves share "
        f"no PSNR). Times: per file, resampling included. `resampling alone`: the PSNR "
        f"of the images upsampled and resized back, no coding, from the plain upsampling → "
        f"from the encoder's, back-projected so that the decoder's resizing returns the "
        f"image (`slimcodec.scaling.upsample`; mean, and the lowest): a ceiling on the "
        f"files; and the upsampling's time per image, each way."
        + (" Targets (`--targets`): `slimcodec compress --target-bpp R --width "
           f"{width}` per scale setting, the PSNR reached, mean over the images every "
           "setting reached R on (how many: `images`), with the mean relative rate error, "
           "the encoder's passes and the whole search's time per file; WebP's PSNR "
           "interpolated on its curve at R, per image." if args.targets else "")
        + "\n\n"
        + "\n\n".join(tables))
    write_section(f"resampled-coding-{args.name or args.model}", body)


if __name__ == "__main__":
    main()
