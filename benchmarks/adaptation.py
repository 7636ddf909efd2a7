"""Domain adaptation (issue 13): every method, on screen content and illustrations.

For each target domain and each number of adaptation images, every method adapts the
source model (`slimcodec adapt`'s code, the same steps for all), and the adapted codec is
measured on held-out images of the domain (never used for adapting) and on the source's
photos:

* target gain: BD-rate of the adapted curve (its widths as RD points; a variable-rate
  model's RD envelope, and each width's own curve over its λ) against the unadapted one on
  the held-out domain images, and ΔPSNR at equal rate per point;
* forgetting: BD-rate change on the photos when coding them as the adapted codec would
  (the new model for `finetune`/`selective`; for adapter methods, photos are coded without
  the adapter, domain 0, which is the source codec bit for bit);
* size: the adapter file (or the new model file) in bytes and as a share of the model's;
* wall time of the adaptation.

Screens come from `slimcodec.domains.screen` (train: seeds 0.., test: seeds 1000..);
illustrations from `../shared/data/art` (the first half adapts, whole; the second half
tests). With ``--folds K`` the illustrations are measured by K-fold cross-validation
instead: fold i adapts on every image but every K-th from the i-th and tests on those, so
each image is coded by an adapter that never saw it and all images but a fold's adapt
(``--folds 10`` on 10 images: leave one out, 9 adapt). The folds' test points are pooled
into one curve per method. ``--halves`` adapts on every illustration's left half and tests
on its right half: the styles seen, the pixels not. ``--gate`` codes each test image as
the encoder's gate does (adapter or source codec, the lower RD loss). ``--generated N``
adds N illustrations from `slimcodec.domains.illustration` to the art the adaptation sees
(``--generated-only``: those alone); the test images stay the real held-out ones.

    python benchmarks/adaptation.py [--model slimcae] [--counts 0 10 25] [--steps 400] \\
        [--lr LR (default: each method's own)] [--domains screen art] [--patch 64] \\
        [--no-output-filter] [--[no-]entropy-models] [--seen] [--folds K | --halves] [--gate] \\
        [--generated N [--generated-only]]

A run off the defaults (another model, a subset of methods or domains, another step size,
step count or patch, no output filter, --[no-]entropy-models, --seen, --folds, --halves, --gate,
--generated)
writes its own section, named after what it changed. A variable-rate model is measured by
its RD envelope (every width at 5 λ).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import (
    centre_crop,
    fmt,
    held_out_screens,
    load_test_images,
    table_head,
    write_section,
)
from PIL import Image

from slimcodec.adaptation import ADAPTER_METHODS, DEFAULT_LR, METHODS, adapt, save_adapter
from slimcodec.codec import Codec
from slimcodec.domains.illustration import write_illustrations
from slimcodec.domains.screen import render_screen, write_screens
from slimcodec.evaluate import evaluate
from slimcodec.models import ModulatedSlimCAE
from slimcodec.utils.metrics import mean_psnr
from slimcodec.utils.rd import bd_rate, psnr_at_rate, rd_hull
from slimcodec.zoo import load_model, model_meta, save_model_file


@dataclass
class Curve:
    """A codec's RD points on a set of images. ``points``: its curve, a single-rate model's
    widths or a variable-rate model's RD envelope. ``by_width``: for a variable-rate model,
    each width's own curve over its λ, widest first (empty for a single-rate model, whose
    widths are one point each)."""

    points: list[tuple[float, float]]
    by_width: dict[int, list[tuple[float, float]]]


def curve(codec: Codec, images, domain: str | None = None) -> Curve:
    # scale 1: the model at the image's own size, so that the adapter is what differs
    return pooled([evaluate(codec, images, progress=False, domain=domain, scale=1)])


def pooled(results: list[dict]) -> Curve:
    """One RD point per operating point (width, and λ for a variable-rate model): the mean
    over every image of every result (the folds of a cross-validation test disjoint images
    of one size)."""
    records: dict[tuple[int, float | None], list[dict]] = {}
    for result in results:
        for r in result["per_image"]:
            records.setdefault((r["width"], r.get("lmbda")), []).append(r)
    points = {key: (sum(r["bpp"] for r in rs) / len(rs), mean_psnr(r["psnr"] for r in rs))
              for key, rs in records.items()}  # (an exact image counted at 60 dB)
    # A variable-rate model's points are a cloud (5 widths x 5 λ): its curve is the RD
    # envelope, the points a user would pick. A single-rate model's widths are its curve.
    if all(lmbda is None for _, lmbda in records):
        return Curve(list(points.values()), {})
    by_width: dict[int, list[tuple[float, float]]] = {}
    for (width, _), point in sorted(points.items(), key=lambda kv: (-kv[0][0], kv[1][0])):
        by_width.setdefault(width, []).append(point)
    return Curve(rd_hull(list(points.values())), by_width)


def adapted_codec(source, model: str, lambdas, result, path: Path, name: str,
                  gate: bool = False) -> tuple[Codec, str | None]:
    """Write the adaptation's file to ``path``; the codec that codes the domain with it
    and the domain to code under (None: a new model, no adapter; "auto" with ``gate``: the
    encoder's gate picks the adapter or the source codec per image)."""
    if result.adapter is not None:  # the domain codes through the adapter
        save_adapter(result.adapter, path)
        codec = Codec(source, model, rd_lambdas=lambdas, adapters=[result.adapter])
        return codec, "auto" if gate else name
    save_model_file(result.model, path)
    return Codec(result.model, rd_lambdas=lambdas), None


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """Where the domains' images come from, and the test crops (shared with gate_mixture.py)."""
    p.add_argument("--screens", type=int, default=40, help="screens rendered to adapt on")
    p.add_argument("--test", type=int, default=6, help="held-out images per domain")
    p.add_argument("--art", default="../shared/data/art")
    p.add_argument("--photos", default="../shared/data/photos")
    p.add_argument("--crop", default="384x256", help="WxH of every test image")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="slimcae")
    p.add_argument("--counts", type=int, nargs="+", default=[0, 10, 25],
                   help="adaptation images (0: all), run in this order")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--lr", type=float, help="one Adam step size for every method")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                   help="a subset writes its own section (adaptation-METHOD...)")
    p.add_argument("--domains", nargs="+", choices=("screen", "art"),
                   default=["screen", "art"])
    p.add_argument("--patch", type=int, default=64, help="training crop side")
    p.add_argument("--no-output-filter", dest="output_filter", action="store_false",
                   help="adapters and extend without their output filter (the ablation)")
    p.add_argument("--entropy-models", action=argparse.BooleanOptionalAction,
                   help="adapter methods with (or, --no-entropy-models, without) the domain's "
                        "own entropy models (default: extend only)")
    p.add_argument("--seen", action="store_true",
                   help="also BD-rate on (centre crops of) images the adaptation saw")
    p.add_argument("--folds", type=int,
                   help="illustrations only, by K-fold cross-validation (see above)")
    p.add_argument("--halves", action="store_true",
                   help="illustrations only: adapt on every image's left half, test on its "
                        "right half (the same styles, pixels never seen)")
    p.add_argument("--gate", action="store_true",
                   help="adapter methods code each test image through the encoder's gate "
                        "(adapter or source codec, the lower RD loss) instead of always "
                        "through the adapter")
    p.add_argument("--generated", type=int, default=0,
                   help="generated illustrations added to the art the adaptation sees")
    p.add_argument("--generated-only", action="store_true",
                   help="adapt on the generated illustrations alone (with --generated N)")
    add_data_arguments(p)
    args = p.parse_args()
    if args.generated_only and not args.generated:
        p.error("--generated-only needs --generated N")
    if args.folds and (args.seen or args.halves):
        p.error("--folds measures whole held-out images; drop --seen and --halves")
    if args.folds or args.halves:
        args.domains = ["art"]
    w, h = (int(v) for v in args.crop.split("x"))
    source = load_model(args.model)
    args.variable = isinstance(source, ModulatedSlimCAE)
    lambdas = model_meta(args.model).get("lambdas")
    base = Codec(source, args.model, rd_lambdas=lambdas)
    photos = [rgb for _, rgb in load_test_images(args.photos, (w, h))[: args.test]]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "screen").mkdir()
        screen_test, screen_seen = [], []
        if "screen" in args.domains:  # rendering takes a while: only when measured
            write_screens(root / "screen", args.screens, size=(h, w))
            screen_test = [rgb for _, rgb in held_out_screens(args.test, (w, h))]
            screen_seen = [render_screen(i, (h, w)) for i in range(args.test)]
        # The first half of the illustrations adapts, whole (a user adapts on the images
        # they have, not on crops of them); the second half tests, as centre crops.
        art = load_test_images(args.art, None)
        half = len(art) // 2
        (root / "art").mkdir()
        for name, rgb in [] if args.generated_only else art if args.halves else art[:half]:
            Image.fromarray(rgb[:, : rgb.shape[1] // 2] if args.halves else rgb).save(
                root / "art" / name)
        write_illustrations(root / "art", args.generated, size=(512, 768))
        art_crops = [centre_crop(rgb, (w, h)) for _, rgb in art]
        art_test, art_seen = art_crops[half:], art_crops[:half]
        if args.halves:  # the same styles, pixels never seen: right halves test
            art_test = [centre_crop(rgb[:, rgb.shape[1] // 2 :], (w, h)) for _, rgb in art]
            art_seen = [centre_crop(rgb[:, : rgb.shape[1] // 2], (w, h)) for _, rgb in art]
        domains = {"screen": (root / "screen", screen_test), "art": (root / "art", art_test)}
        domains = {name: domains[name] for name in args.domains}
        # --seen: the same measure on images the adaptation saw (centre crops of the first
        # ones), to tell a capacity limit from a generalisation gap.
        seen = {"screen": screen_seen, "art": art_seen}
        photo_curve = curve(base, photos)
        model_bytes = sum(t.numel() * t.element_size() for t in source.state_dict().values())
        if args.folds:
            rows = cross_validate(args, root, source, base, lambdas, art, art_crops,
                                  photos, photo_curve, model_bytes)
        else:
            rows = measure_counts(args, root, source, base, lambdas, domains, seen, photos,
                                  photo_curve, model_bytes)
    body = _body(args, rows, len(photos))
    write_section(_section(args), body)
    print(body)


def measure_counts(args, root: Path, source, base: Codec, lambdas, domains, seen, photos,
                   photo_curve, model_bytes: int) -> list[str]:
    """Every method on every domain, for each count of adaptation images in turn."""
    plains = {name: curve(base, test) for name, (_, test) in domains.items()}
    available = {name: len(list(folder.iterdir())) for name, (folder, _) in domains.items()}
    rows = []
    # Counts outermost, in the order given: the first count's rows of every domain
    # are written first (an interrupted run keeps them).
    done = set()
    for count in args.counts:
        for name, (folder, test) in domains.items():
            plain = plains[name]
            n = available[name] if count == 0 else count
            if n > available[name] or (name, n) in done:  # 0 ("all") may equal a count
                continue
            done.add((name, n))
            seen_images = seen[name][: min(n, args.test)]
            plain_seen = curve(base, seen_images).points if args.seen else []
            for method in args.methods:
                t0 = time.time()
                result = adapt(source, folder, method, name, lambdas, steps=args.steps,
                               images=n, lr=args.lr, patch=args.patch,
                               output_filter=args.output_filter,
                               entropy_models=_entropy_models(args, method), progress=False)
                seconds = time.time() - t0
                path = root / f"{name}-{method}-{n}.bin"
                codec, domain = adapted_codec(source, args.model, lambdas, result, path,
                                              name, args.gate)
                target = curve(codec, test, domain)
                forgetting = bd_rate(photo_curve.points, curve(codec, photos).points)
                seen_curve = curve(codec, seen_images, domain).points if args.seen else []
                seen_cell = (f" {fmt(bd_rate(plain_seen, seen_curve), '+.1f', '%')} |"
                             if args.seen else "")
                rows.append(_row(name, str(n), method, plain, target, seen_cell,
                                 forgetting, path.stat().st_size, model_bytes, seconds))
                print(rows[-1], flush=True)
                # Written after every row: an interrupted run keeps what it measured.
                write_section(_section(args), _body(args, rows, len(photos), partial=True))
    return rows


def cross_validate(args, root: Path, source, base: Codec, lambdas, art, art_crops, photos,
                   photo_curve, model_bytes: int) -> list[str]:
    """--folds: each method adapts once per fold and codes that fold's held-out crops;
    the folds' points pool into the method's curve. Forgetting and seconds: fold means."""
    k = args.folds
    if not 2 <= k <= len(art):
        raise SystemExit(f"--folds must be between 2 and the {len(art)} illustrations")
    folds = [list(range(i, len(art), k)) for i in range(k)]
    for i, held in enumerate(folds):
        folder = root / f"art-fold{i}"
        folder.mkdir()
        for j, (name, rgb) in enumerate(art):
            if j not in held:
                Image.fromarray(rgb).save(folder / name)
    plain = curve(base, art_crops)
    adapt_count = "/".join(sorted({str(len(art) - len(held)) for held in folds}))
    rows = []
    for method in args.methods:
        results, forgetting, seconds = [], [], 0.0
        for i, held in enumerate(folds):
            t0 = time.time()
            result = adapt(source, root / f"art-fold{i}", method, "art", lambdas,
                           steps=args.steps, lr=args.lr, patch=args.patch,
                           output_filter=args.output_filter,
                           entropy_models=_entropy_models(args, method), progress=False)
            seconds += time.time() - t0
            path = root / f"art-{method}-fold{i}.bin"
            codec, domain = adapted_codec(source, args.model, lambdas, result, path, "art",
                                          args.gate)
            results.append(evaluate(codec, [art_crops[j] for j in held], progress=False,
                                    domain=domain, scale=1))
            forgetting.append(bd_rate(photo_curve.points, curve(codec, photos).points))
            print(f"{method} fold {i + 1}/{k}: {seconds:.0f} s", flush=True)
        known = [f for f in forgetting if f is not None]
        rows.append(_row("art", f"{adapt_count} ({k} folds)", method, plain, pooled(results),
                         "", sum(known) / len(known) if known else None,
                         path.stat().st_size, model_bytes, seconds / k))
        print(rows[-1], flush=True)
        write_section(_section(args), _body(args, rows, len(photos), partial=True))
    return rows


def _entropy_models(args: argparse.Namespace, method: str) -> bool | None:
    """--entropy-models for the adapter methods; the others write a new model."""
    return args.entropy_models if method in ADAPTER_METHODS else None


def delta_psnr_cells(plain, target) -> str:
    """ΔPSNR of ``target`` at each of ``plain``'s points' rates, as a table cell."""
    cells = []
    for b, q in plain:
        at = psnr_at_rate(target, b)
        cells.append(fmt(None if at is None else at - q, "+.2f"))
    return ", ".join(cells)


def width_bd_cells(plain: Curve, target: Curve) -> str:
    """A variable-rate model's BD-rate per width (each width's curve over its λ), widest
    first, as a table cell."""
    return ", ".join(fmt(bd_rate(points, target.by_width[width]), "+.1f", "%")
                     for width, points in plain.by_width.items())


def _row(name: str, images: str, method: str, plain: Curve, target: Curve, seen_cell: str,
         forgetting: float | None, size: int, model_bytes: int, seconds: float) -> str:
    widths = f" {width_bd_cells(plain, target)} |" if plain.by_width else ""
    return (f"| {name} | {images} | {method} | "
            f"{fmt(bd_rate(plain.points, target.points), '+.1f', '%')} |{widths}"
            f"{seen_cell} {delta_psnr_cells(plain.points, target.points)} | "
            f"{fmt(forgetting, '+.2f', '%')} | "
            f"{size:,} ({size / model_bytes:.1%}) | {seconds:.0f} |")


PARTIAL = ("\n\n*Partial: the rows a run had measured when it was last written; a run that "
           "stopped early never reached the counts and methods missing here.*")


def _settings(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The training settings a run changed from the defaults: (section slug, words)."""
    changes = []
    if args.lr:
        changes.append((f"lr{args.lr:g}", f"step size {args.lr:g}"))
    if args.steps != 400:
        changes.append((f"steps{args.steps}", f"{args.steps} steps"))
    if args.patch != 64:
        changes.append((f"patch{args.patch}", f"patch {args.patch}"))
    if not args.output_filter:
        changes.append(("nofilter", "no output filter"))
    if args.entropy_models is not None:
        changes.append(("entropy" if args.entropy_models else "noentropy",
                        f"adapters {'with' if args.entropy_models else 'without'} the domain's "
                        "own entropy models"))
    if args.seen:
        changes.append(("seen", "also on the images adapted on"))
    if args.folds:
        changes.append((f"folds{args.folds}", f"{args.folds}-fold cross-validation"))
    if args.halves:
        changes.append(("halves", "left halves adapt, right halves test"))
    if args.gate:
        changes.append(("gate", "gated per image"))
    if args.generated:
        changes.append((f"generated{args.generated}{'only' if args.generated_only else ''}",
                        f"{'only ' if args.generated_only else ''}{args.generated} generated "
                        "illustrations"))
    return changes


def _section(args: argparse.Namespace) -> str:
    """The section's name: "adaptation" for the default run, else what the run changed."""
    parts = ["adaptation"] if args.model == "slimcae" else ["adaptation", args.model]
    if list(args.methods) != list(METHODS):
        parts += args.methods
    if list(args.domains) != ["screen", "art"]:
        parts += args.domains
    return "-".join(parts + [slug for slug, _ in _settings(args)])


def _body(args: argparse.Namespace, rows: list[str], photos: int, partial: bool = False
          ) -> str:
    w, h = (int(v) for v in args.crop.split("x"))
    rates = (f"{args.lr:g}" if args.lr else
             ", ".join(f"{lr:g} for {m}" for m, lr in DEFAULT_LR.items()))
    which = ("every method" if list(args.methods) == list(METHODS)
             else ", ".join(f"`{m}`" for m in args.methods))
    filt = "" if args.output_filter else "; no output filter"
    seen_note = ("" if not args.seen else f"\nBD-rate on adapted images: the same measure on "
                 f"centre crops {w}x{h} of the first {args.test} "
                 f"{'left halves' if args.halves else 'images'} the adaptation "
                 "used (all of them, when fewer). A large gap between the two columns says that "
                 "generalising from few images, not the adapter's capacity, limits the gain.")
    gate_note = ("" if not args.gate else "\nGated: the adapter methods code each test "
                 "image twice, through the adapter and through the source codec, and keep the "
                 "file of the lower RD loss (the encoder's gate, `slimcodec compress --adapter A "
                 "--domain auto`; the file's domain id tells the decoder which).")
    where = " and ".join({"screen": "screens", "art": "illustrations"}[d] for d in args.domains)
    order = ("points, widest first" if not args.variable else "envelope's points (the RD "
             "hull of every width at 5 λ; the BD-rates compare envelopes too), lowest rate "
             "first")
    lam = ("the widths' training λ" if not args.variable
           else "a λ drawn in each width's range at every step")
    changed = "".join(f", {words}" for _, words in _settings(args))
    per_width = ("" if not args.variable else "; per width: each width's own curve over its "
                 "5 λ against the unadapted one's, widest first")
    if args.folds:
        data = (f"""in each of {args.folds} folds on every image of `../shared/data/art` but the
fold's own (whole, 1280x720; fold i holds out images i, i+{args.folds}, ... in name order), on
2 CPU cores. Test images, centre crops {w}x{h}: every image of `../shared/data/art`,
each coded with the adapter of the fold that held it out, the folds' points pooled into one
curve (seconds and forgetting: per fold, the folds' mean)""")
    elif args.halves:
        data = (f"""on the left half
(640x720) of every image of `../shared/data/art`, on 2 CPU cores. Test images: centre crops
{w}x{h} of their right halves, pixels the adaptation never saw, in styles it did""")
    else:
        art_on = ("" if args.generated_only else "illustrations whole, 1280x720"
                  + (" and " if args.generated else ""))
        if args.generated:
            art_on += (f"{args.generated} generated illustrations, 768x512 "
                       "(`slimcodec.domains.illustration`, seeds 0..)")
        adapt_on = {"screen": f"screens rendered at {w}x{h}", "art": art_on}
        tests = {"screen": f"{args.test} screens never adapted on (seeds 1000+)",
                 "art": "the second half of `../shared/data/art`"}
        data = (f"""on the first N
images of the domain ({'; '.join(adapt_on[d] for d in args.domains)}), on 2 CPU
cores. Test images, centre crops {w}x{h}: {', and '.join(tests[d] for d in args.domains)}""")
    return f"""## Domain adaptation: {which} on {where} (`{args.model}`{changed})

Each method adapted `{args.model}` for {args.steps} steps (every width jointly, patch {args.patch},
batch 8, Adam with cosine decay from {rates}; {lam}{filt}) {data}; source domain:
{photos} of the shared photos. Target BD-rate: adapted against unadapted on the
domain's test images (negative: the adaptation saves bits){per_width}; ΔPSNR at the rates of the
unadapted {order}; forgetting: BD-rate on the photos, adapted against unadapted (adapter
methods code photos without the adapter, so it is 0 by construction, and the test suite
checks the bits).{gate_note}{seen_note}

{table_head(["domain", "images", "method", "target BD-rate",
             *(["target BD-rate per width"] if args.variable else []),
             *(["BD-rate on adapted images"] if args.seen else []),
             "target ΔPSNR per envelope point (dB)" if args.variable
             else "target ΔPSNR per width (dB)",
             "forgetting (photos)", "size, bytes (share of the model)", "seconds"])}
{chr(10).join(rows)}{PARTIAL if partial else ""}"""

if __name__ == "__main__":
    main()
