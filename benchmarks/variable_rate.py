"""Variable rate (issue 12): the rate x complexity plane of `slimcae-vr`, rate control, and the
continuous-λ penalty and entropy-model choice.

Sections written to RESULTS.md (a model other than `slimcae-vr` gets its own, named
``vr_rd-MODEL`` and so on, as do its figures):

* `vr_rd`: every width over its λ range (real files) on the test photos; the envelope
  against JPEG 4:2:0, WebP and AVIF (BD-rate, ΔPSNR at equal rate) and against `slimcae` at
  its own points and, for a model other than `slimcae-vr`, against `slimcae-vr`'s envelope
  (`--previous`); plots of bpp against PSNR per width and against decoder MACs.
* `rate_control`: `--target-bpp` over the folder (through the model's gate where it ships
  adapters, timed against every pass through the gate): median and worst relative error,
  passes; `--name N` writes `rate_control-MODEL-N` (another folder's images);
  `--psnr-targets 30 32 34`: `--target-psnr` instead, error in dB.
* `vr_refined` (``--only refined``): the envelope with content-adaptive encoding
  (`--refine N`, `--effort 4` is 100 steps) against the plain one and the classical codecs,
  on the first ``--refine-count`` images at ``--refine-crop`` (refining every point of 12
  full crops would take hours on 2 cores).
* `vr_penalty` (with `--penalty-runs`, from benchmarks/train_vr_penalty.sh): the single-width
  continuous-λ models against fixed-λ models of the same width and steps (BD-rate), with one
  entropy model per anchor and with one shared by all λ.

    python benchmarks/variable_rate.py --images ../shared/data/photos --crop 768x512 \\
        [--model slimcae-vr5] [--previous slimcae-vr5] [--penalty-runs runs-vr-penalty] \\
        [--targets 0.1 0.2 0.4 0.8] [--only rd rate penalty refined] \\
        [--refine-steps 100] [--refine-count 6] [--refine-crop 384x256] [--name N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import zlib
from pathlib import Path

import torch
from common import (
    COMPARED,
    FIGURES,
    classical_rd,
    fmt,
    held_out_screens,
    load_test_images,
    parse_crop,
    table_head,
    write_section,
)
from slimcodec_edge.profile import count_macs

from slimcodec.api import codec_for
from slimcodec.errors import RateError
from slimcodec.evaluate import evaluate
from slimcodec.gating import GATES
from slimcodec.rate_control import encode_to_target
from slimcodec.utils.rd import bd_rate, bpp_span, psnr_at_rate, rd_hull

CACHE = Path("/tmp/slimcodec-bench")


def _cached(key: str, compute):
    """``compute()``, kept in /tmp under a hash of ``key``."""
    path = CACHE / f"vr_rd-{zlib.crc32(key.encode()):08x}.json"
    if path.exists():
        return json.loads(path.read_text())
    value = compute()
    CACHE.mkdir(exist_ok=True)
    path.write_text(json.dumps(value))
    return value


def section_name(base: str, model: str) -> str:
    """The section (and figure) name of ``model``'s results: ``base`` for the first shipped
    variable-rate model, ``base-MODEL`` for any other, so that results never overwrite."""
    return base if model == "slimcae-vr" else f"{base}-{model}"


def _points(codec, sizes: str, rgbs, refine: int = 0) -> list[dict]:
    """``codec``'s RD points on the images (``sizes`` names them), measured once and kept."""
    key = f"{codec.fingerprint.hex()}-{sizes}" + (f"-refine{refine}" if refine else "")
    # scale 1: the model at the image's own size (what the cache, kept across runs, holds)
    return _cached(key, lambda: evaluate(codec, rgbs, progress=False, refine=refine,
                                         scale=1)["points"])


def _sizes(images) -> str:
    return "-".join(f"{n}:{rgb.shape[1]}x{rgb.shape[0]}" for n, rgb in images)


def _classical(images) -> dict[str, list[tuple[float, float]]]:
    sizes = _sizes(images)
    curves = _cached(f"classical-{sizes}", lambda: {
        name: classical_rd(images, name) for name in COMPARED})
    return {name: [tuple(p) for p in curve] for name, curve in curves.items()}  # JSON


def previous_line(model: str, previous: str, envelope, sizes: str, rgbs) -> str:
    """How ``model``'s envelope compares with an earlier variable-rate model's."""
    if previous == model:
        return ""
    points = _points(codec_for(previous), sizes, rgbs)
    old_env = rd_hull([(p["bpp"], p["psnr"]) for p in points])
    rates = [0.1, 0.15, 0.25, 0.4, 0.6, 1.0]
    gaps = []
    for b in rates:
        new, was = psnr_at_rate(envelope, b), psnr_at_rate(old_env, b)
        gaps.append(f"{b:g}: " + fmt(None if new is None or was is None else new - was, "+.2f"))
    bd = fmt(bd_rate(old_env, envelope), "+.1f", "%")
    return (f"\n- Against `{previous}`'s envelope: BD-rate **{bd}** where they overlap; "
            f"ΔPSNR at equal rate (bpp: dB) {', '.join(gaps)}.")


def rd_section(model: str, images, crop, reference: str, previous: str) -> None:
    codec = codec_for(model)
    # The measurements take half an hour on 2 cores: kept, so that the tables and plots can
    # be redrawn without measuring again, and a second model reuses the classical codecs'
    # and the reference's (each key names the weights or codec and the images).
    sizes = _sizes(images)
    rgbs = [rgb for _, rgb in images]
    points = _points(codec, sizes, rgbs)
    classical = _classical(images)
    ref_codec = codec_for(reference)
    ref = _points(ref_codec, sizes, rgbs)
    envelope = rd_hull([(p["bpp"], p["psnr"]) for p in points])
    ref_curve = [(p["bpp"], p["psnr"]) for p in ref]
    h, w = images[0][1].shape[:2]
    macs = {}
    for width in codec.widths:
        with codec.operating_point(width, codec.default_lambda(width)) as m:
            x = torch.rand(1, 3, -(-h // 16) * 16, -(-w // 16) * 16)
            y = m.analysis(x)
            macs[width] = count_macs(_Synthesis(m), (y,)) / (h * w)
    rows = []
    for p in points:
        gaps = [psnr_at_rate(classical[name], p["bpp"]) for name in classical]
        rows.append(f"| {p['width']} | {p['lmbda']:.5f} | {p['bpp']:.4f} | {p['psnr']:.2f} | "
                    + " | ".join(fmt(None if g is None else p["psnr"] - g, "+.2f")
                                 for g in gaps) + " |")
    vs_ref = []
    for b, q in ref_curve:
        at = psnr_at_rate(envelope, b)
        vs_ref.append(fmt(None if at is None else at - q, "+.2f"))
    narrow_low = min((p for p in points if p["width"] == min(codec.widths)),
                     key=lambda p: p["lmbda"])
    wide_high = max((p for p in points if p["width"] == max(codec.widths)),
                    key=lambda p: p["lmbda"])
    bd = {name: bd_rate(curve, envelope) for name, curve in classical.items()}
    rd_name, plane_name = section_name("vr_rd", model), section_name("vr_complexity", model)
    against_previous = previous_line(model, previous, envelope, sizes, rgbs)
    _plots(model, codec, points, classical, ref_curve, macs, reference, rd_name, plane_name)
    body = f"""## Variable rate: `{model}` over the rate x complexity plane

{len(images)} images ({', '.join(n for n, _ in images)}), centre crop {crop[0]}x{crop[1]}
(`{model}` never saw them; `{reference}` was trained on 9 of them). Each width at 5 λ spread
over its range in log scale; bpp from the real files. ΔPSNR: the model's PSNR minus the
codec's at the same bpp (n/a where the codec's qualities do not reach it).

| width | λ | bpp | PSNR (dB) | ΔPSNR vs JPEG 4:2:0 | ΔPSNR vs WebP | ΔPSNR vs AVIF |
|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

- Range: narrowest width, lowest λ: **{narrow_low['bpp']:.3f} bpp** (target <= 0.12);
  widest, highest λ: **{wide_high['bpp']:.3f} bpp, {wide_high['psnr']:.2f} dB** (target >= 1.0
  bpp); span of the envelope {bpp_span(envelope):.1f}x.
- Envelope (all widths, all λ) BD-rate: against JPEG 4:2:0 **{fmt(bd['JPEG 4:2:0'], '+.1f', '%')}**,
  against WebP **{fmt(bd['WebP'], '+.1f', '%')}**, against AVIF **{fmt(bd['AVIF'], '+.1f', '%')}**
  (n/a: the curves share no PSNR range).
- Against `{reference}` at its own points ({', '.join(f'{b:.3f}' for b, _ in ref_curve)} bpp):
  the envelope's PSNR minus `{reference}`'s: {', '.join(vs_ref)} dB.
- Decoder MACs per pixel (fvcore, with GDN and modulation; see `slimcodec profile`):
  {', '.join(f'{wd}: {m:,.0f}' for wd, m in macs.items())}.{against_previous}

![RD per width](figures/{rd_name}.png) ![complexity against rate](figures/{plane_name}.png)"""
    write_section(rd_name, body)
    print(body)


class _Synthesis(torch.nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, y):
        return self.model.synthesis(y)


def _plots(model, codec, points, classical, ref_curve, macs, reference, rd_name,
           plane_name) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    FIGURES.mkdir(exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 5))
    for width in codec.widths:
        pts = sorted((p["bpp"], p["psnr"]) for p in points if p["width"] == width)
        ax.plot(*zip(*pts, strict=True), marker="o", label=f"width {width}")
    for name, curve in classical.items():
        ax.plot(*zip(*sorted(curve), strict=True), ls="--", label=name)
    ax.plot(*zip(*sorted(ref_curve), strict=True), marker="s", ls=":", label=reference)
    ax.set(xlabel="bits per pixel", ylabel="PSNR (dB, RGB)", xscale="log",
           title=f"{model}: every width over its λ range")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(FIGURES / f"{rd_name}.png", dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 5))
    for width in codec.widths:
        bpps = sorted(p["bpp"] for p in points if p["width"] == width)
        ax.plot(bpps, [macs[width]] * len(bpps), marker="o", label=f"width {width}")
    ax.set(xlabel="bits per pixel", ylabel="decoder MACs per pixel", xscale="log",
           yscale="log", title=f"{model}: the rate x complexity plane")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(FIGURES / f"{plane_name}.png", dpi=120)
    plt.close(fig)


def refined_section(model: str, images, crop, steps: int) -> None:
    """The envelope with content-adaptive encoding against the plain one and the classical
    codecs: what `--refine` / `--effort` buys, and how far it closes the gap to WebP."""
    codec = codec_for(model)
    sizes, rgbs = _sizes(images), [rgb for _, rgb in images]
    plain, refined = _points(codec, sizes, rgbs), _points(codec, sizes, rgbs, refine=steps)
    envelopes = {name: rd_hull([(p["bpp"], p["psnr"]) for p in pts])
                 for name, pts in (("plain", plain), (f"refined, {steps} steps", refined))}
    classical = _classical(images)
    rates = [0.1, 0.15, 0.25, 0.4, 0.6, 1.0]
    webp = [psnr_at_rate(classical["WebP"], b) for b in rates]
    rows = []
    for name, env in envelopes.items():
        at = [psnr_at_rate(env, b) for b in rates]
        bpps = [b for b, _ in env]
        rows.append(f"| {name} | {min(bpps):.3f}-{max(bpps):.3f} | "
                    f"{max(q for _, q in env):.2f} | "
                    + " | ".join(fmt(bd_rate(curve, env), "+.1f", "%")
                                 for curve in classical.values()) + " | "
                    + ", ".join(fmt(None if a is None or q is None else a - q, "+.2f")
                                for a, q in zip(at, webp, strict=True)) + " |")
    per_width = []
    for width in codec.widths:
        curves = [[(p["bpp"], p["psnr"]) for p in pts if p["width"] == width]
                  for pts in (plain, refined)]
        slow = (statistics.mean(p["enc_ms"] for p in refined if p["width"] == width)
                / statistics.mean(p["enc_ms"] for p in plain if p["width"] == width))
        per_width.append(f"{width}: {fmt(bd_rate(*curves), '+.1f', '%')} ({slow:.0f}x)")
    head = table_head(["envelope", "bpp range", "top PSNR (dB)", "BD-rate vs JPEG 4:2:0",
                       "vs WebP", "vs AVIF", f"ΔPSNR vs WebP at {', '.join(map(str, rates))} "
                       "bpp (dB)"])
    body = f"""## Variable rate: `{model}` refined per image, against the classical codecs

{len(images)} images ({', '.join(n for n, _ in images)}), centre crop {crop[0]}x{crop[1]},
every width at 5 λ over its range, coded plainly and with `--refine {steps}` (the latent of
each image optimised for the width's RD loss; the decoder is unchanged). The classical
codecs' curves are measured on the same crops. ΔPSNR against WebP at equal rate (n/a: out of
either's range).

{head}
{chr(10).join(rows)}

Refined against plain, per width (BD-rate, encode time as a multiple of plain's):
{', '.join(per_width)}."""
    write_section(section_name("vr_refined", model), body)
    print(body)


#: How ``--prefer`` picks the width, as the section says it.
WIDTH_ORDER = {"cost": "the cheapest", "quality": "the widest"}


def rate_control_section(model: str, images, targets: list[float], max_passes: int,
                         name: str | None = None, prefer: str = "cost",
                         by_psnr: bool = False) -> None:
    """``--target-bpp`` (``--target-psnr`` where ``by_psnr``: ``targets`` in dB) as
    ``slimcodec compress`` searches it (through the model's gate where it has one). A gate's
    search codes its passes with the model alone and the gate once at the λ found (a PSNR
    target's, then on through the gate from there down where the gate kept an adapter above
    the target, or every pass through the gate where it keeps one on the image's probe:
    :mod:`slimcodec.rate_control`); it is timed against the search that codes every pass
    through the gate, side by side, image by image."""
    codec = codec_for(model)
    gated = codec.default_domain in GATES  # then timed against every pass through the gate
    goal = "target_psnr" if by_psnr else "target_bpp"
    spec, unit = (".3f", " dB") if by_psnr else (".2f", "%")  # errors: dB, or % of the target
    rows, errors, passes, misses, fast, slow, same = [], [], [], 0, [], [], []
    for target in targets:
        errs, used = [], []
        for _, rgb in images:
            try:
                t0 = time.perf_counter()
                data, search = encode_to_target(codec, rgb, **{goal: target},
                                                max_passes=max_passes, prefer=prefer,
                                                domain=codec.default_domain)
                t1 = time.perf_counter()
                if gated:
                    each, _ = encode_to_target(codec, rgb, **{goal: target},
                                               max_passes=max_passes, prefer=prefer,
                                               domain=codec.default_domain, gate_proxy=False)
                    fast.append(t1 - t0)
                    slow.append(time.perf_counter() - t1)
                    same.append(each == data)
            except RateError:  # out of reach on this image: counted apart
                misses += 1
                continue
            errs.append(abs(search.psnr - target) if by_psnr  # type: ignore[operator]
                        else abs(8 * len(data) / rgb[..., 0].size - target) / target * 100)
            used.append(len(search.tried))
        errors += errs
        passes += used
        median = statistics.median(errs) if errs else None
        worst = max(errs) if errs else None
        rows.append(f"| {target:g} | {len(errs)} | {fmt(median, spec, unit)} | "
                    f"{fmt(worst, spec, unit)} | "
                    f"{fmt(statistics.mean(used) if used else None, '.1f')} | "
                    f"{max(used) if used else 'n/a'} |")
    how = (f"through its gate (`--domain {codec.default_domain}`, as `slimcodec compress` "
           "codes), " if gated else "")
    option, axis, error = (("--target-psnr", "PSNR", "|achieved − target| in dB (tolerance "
                            "0.02 dB), the PSNR of the decoded file") if by_psnr else
                           ("--target-bpp", "log rate", "|achieved − target| / target, bpp "
                            "from the real file"))
    body = f"""## Rate control: `{option}` on `{model}`

{len(images)} images ({", ".join(n for n, _ in images)}) coded at each target {how}by
`encode_to_target` ({WIDTH_ORDER[prefer]} width that reaches the target, then λ from the
top of its range down by secant steps in {axis}, by regula falsi once a pass lands below
the target; at most {max_passes} encoder passes per width tried). Error: {error}.
Passes: every encode of the search, at every width tried.

{table_head(["target dB" if by_psnr else "target bpp", "images", "median error",
             "worst error", "mean passes", "max passes"])}
{chr(10).join(rows)}

Over all targets: median error **{fmt(statistics.median(errors), spec, unit)}**{"" if by_psnr
else " (target <= 3%)"}, worst {fmt(max(errors), spec, unit)}, passes
{statistics.mean(passes):.1f} on average, {max(passes)} at most;
{misses} image-target pairs out of reach (the search says so and names the reachable range)."""
    if gated:
        differ = ("" if all(same) else " (where not, the gate kept an adapter on the way, "
                  + ("above the model alone's PSNR, " if by_psnr else "with its own strings, ")
                  + "and each search landed on its own λ within the tolerance)")
        first, further = ((" Every pass through the gate where the gate kept an adapter on the "
                           "image's probe (a 256x256 mosaic of it) at the top of the first "
                           "width's range; else its", ", then on through the gate from there "
                           "down where it kept an adapter above the target") if by_psnr
                          else (" Its", ""))
        body += f"""

**The gate's search.**{first} passes coded with the model alone and the gate coding once at
the λ found{further}: {sum(fast):.1f} s for the {len(fast)} searches, against {sum(slow):.1f} s
with every pass through the gate (**{sum(slow) / sum(fast):.2f}x**, the two alternating image by
image, same run); the same file in {sum(same)} of {len(same)}{differ}."""
    write_section(section_name("rate_control", model) + (f"-{name}" if name else ""), body)
    print(body)


def penalty_section(runs: Path, images) -> None:
    fixed = sorted(runs.glob("fixed-*/model.pt"), key=lambda p: float(p.parent.name[6:]))
    lambdas = [float(p.parent.name[6:]) for p in fixed]
    fixed_curve = []
    for path in fixed:
        pt = evaluate(codec_for(path), [rgb for _, rgb in images], progress=False,
                      scale=1)["points"][0]
        fixed_curve.append((pt["bpp"], pt["psnr"]))
    rows, curves = [], {}
    for path in sorted(runs.glob("vr-anchors-*/model.pt")):
        codec = codec_for(path)
        pts = evaluate(codec, [rgb for _, rgb in images], progress=False,
                       lmbdas=lambdas, scale=1)["points"]
        curve = [(p["bpp"], p["psnr"]) for p in pts]
        curves[path.parent.name] = curve
        bd = bd_rate(fixed_curve, curve)
        gaps = [psnr_at_rate(curve, b) for b, _ in fixed_curve]
        rows.append(f"| {path.parent.name} | {fmt(bd, '+.1f', '%')} | "
                    + ", ".join(fmt(None if g is None else g - q, "+.2f")
                                for g, (_, q) in zip(gaps, fixed_curve, strict=True))
                    + " | " + ", ".join(f"{b:.3f}/{q:.2f}" for b, q in curve) + " |")
    steps = _steps(fixed[0].parent) if fixed else "?"
    body = f"""## Continuous λ against fixed λ, and how the entropy model follows λ

Single-width (96) models, all started from width 96 of the shipped `slimcae`
(`tools/single_width.py`) and trained alike ({steps} steps each,
`benchmarks/train_vr_penalty.sh`): four fixed-λ models at λ = {', '.join(map(str, lambdas))},
and two continuous-λ models over 0.001-0.05, one with an entropy model per anchor (8, as
`slimcae-vr` ships) and one with a single entropy model for all λ. The continuous models are
evaluated at the fixed models' λ, on the `vr_rd` images. Penalty: BD-rate against the fixed
curve (target <= +3%); ΔPSNR at each fixed model's rate.

Fixed-λ curve (bpp/PSNR): {', '.join(f'{b:.3f}/{q:.2f}' for b, q in fixed_curve)}.

| continuous model | BD-rate vs fixed | ΔPSNR at the fixed rates (dB) | its points (bpp/PSNR) |
|---|---:|---|---|
{chr(10).join(rows)}"""
    write_section("vr_penalty", body)
    print(body)


def _steps(run: Path) -> str:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return str(json.loads(lines[-1])["step"]) if lines else "?"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", default="../shared/data/photos",
                   help="test photos (default: the shared photos, from the repository root)")
    p.add_argument("--crop", default="768x512")
    p.add_argument("--model", default="slimcae-vr5")
    p.add_argument("--reference", default="slimcae")
    p.add_argument("--previous", default="slimcae-vr5",
                   help="an earlier variable-rate model whose envelope the model's is set against")
    p.add_argument("--targets", type=float, nargs="+", default=[0.1, 0.2, 0.4, 0.8])
    p.add_argument("--psnr-targets", type=float, nargs="+", metavar="DB",
                   help="rate: search these PSNRs (--target-psnr) instead of --targets' bpp")
    p.add_argument("--max-passes", type=int, default=10)
    p.add_argument("--name", help="rate: a suffix of the section's name (other images)")
    p.add_argument("--screens", type=int, metavar="N",
                   help="rate: the N held-out generated screens instead of --images")
    p.add_argument("--prefer", default="cost", choices=["cost", "quality"],
                   help="rate: which width a target takes (default: the cheapest that "
                        "reaches it, as the recorded runs searched)")
    p.add_argument("--penalty-runs", help="runs folder of benchmarks/train_vr_penalty.sh")
    p.add_argument("--only", choices=["rd", "rate", "penalty", "refined"], nargs="+",
                   default=["rd", "rate", "penalty"])
    p.add_argument("--refine-steps", type=int, default=100,
                   help="refined: latent refinement steps (--effort 4 is 100)")
    p.add_argument("--refine-count", type=int, default=6, help="refined: the first N images")
    p.add_argument("--refine-crop", default="384x256", help="refined: their centre crop")
    args = p.parse_args()
    crop = parse_crop(args.crop)
    images = load_test_images(args.images, crop)
    if "rd" in args.only:
        rd_section(args.model, images, crop, args.reference, args.previous)
    if "rate" in args.only:
        rate_images = held_out_screens(args.screens, crop) if args.screens else images
        rate_control_section(args.model, rate_images, args.psnr_targets or args.targets,
                             args.max_passes, args.name, args.prefer,
                             by_psnr=args.psnr_targets is not None)
    if "penalty" in args.only and args.penalty_runs:
        penalty_section(Path(args.penalty_runs), images)
    if "refined" in args.only:
        small = parse_crop(args.refine_crop)
        refined_section(args.model, load_test_images(args.images, small)[: args.refine_count],
                        small, args.refine_steps)


if __name__ == "__main__":
    main()
