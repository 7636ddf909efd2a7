"""Domain adaptation (issue 13): every method, on screen content and illustrations.

For each target domain and each number of adaptation images, every method adapts the
source model (`slimcodec adapt`'s code, the same steps for all), and the adapted codec is
measured on held-out images of the domain (never used for adapting) and on the source's
photos:

* target gain: BD-rate of the adapted curve (its widths as RD points) against the
  unadapted one on the held-out domain images, and ΔPSNR at equal rate per width;
* forgetting: BD-rate change on the photos when coding them as the adapted codec would
  (the new model for `finetune`/`selective`; for adapter methods, photos are coded without
  the adapter, domain 0, which is the source codec bit for bit);
* size: the adapter file (or the new model file) in bytes and as a share of the model's;
* wall time of the adaptation.

Screens come from `slimcodec.domains.screen` (train: seeds 0.., test: seeds 1000..);
illustrations from `../shared/data/art` (the first half adapts, whole; the second half
tests).

    python benchmarks/adaptation.py [--model slimcae] [--counts 0 10 25] [--steps 400] \\
        [--lr LR (default: each method's own)] [--domains screen art] [--patch 64] \\
        [--no-output-filter] [--seen]

A run off the defaults (a subset of methods or domains, another step size, step count or
patch, no output filter, --seen) writes its own section, named after what it changed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import fmt, load_test_images, table_head, write_section
from PIL import Image

from slimcodec.adaptation import DEFAULT_LR, METHODS, adapt, save_adapter
from slimcodec.codec import Codec
from slimcodec.domains.screen import render_screen
from slimcodec.evaluate import evaluate
from slimcodec.utils.rd import bd_rate, psnr_at_rate
from slimcodec.zoo import load_model, model_meta, save_model_file


def curve(codec: Codec, images, domain: str | None = None) -> list[tuple[float, float]]:
    points = evaluate(codec, images, progress=False, domain=domain)["points"]
    return [(p["bpp"], p["psnr"]) for p in points]


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
    p.add_argument("--seen", action="store_true",
                   help="also BD-rate on (centre crops of) images the adaptation saw")
    p.add_argument("--screens", type=int, default=40, help="screens generated to adapt on")
    p.add_argument("--test", type=int, default=6, help="held-out images per domain")
    p.add_argument("--art", default="../shared/data/art")
    p.add_argument("--photos", default="../shared/data/photos")
    p.add_argument("--crop", default="384x256", help="WxH of every test image")
    args = p.parse_args()
    w, h = (int(v) for v in args.crop.split("x"))
    source = load_model(args.model)
    lambdas = model_meta(args.model).get("lambdas")
    base = Codec(source, args.model, rd_lambdas=lambdas)
    photos = [rgb for _, rgb in load_test_images(args.photos, (w, h))[: args.test]]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "screen").mkdir()
        for i in range(args.screens):
            Image.fromarray(render_screen(i, (h, w))).save(root / "screen" / f"{i:04d}.png")
        screen_test = [render_screen(1000 + i, (h, w)) for i in range(args.test)]
        # The first half of the illustrations adapts, whole (a user adapts on the images
        # they have, not on crops of them); the second half tests, as centre crops.
        art = load_test_images(args.art, None)
        half = len(art) // 2
        (root / "art").mkdir()
        for name, rgb in art[:half]:
            Image.fromarray(rgb).save(root / "art" / name)
        art_crops = [rgb for _, rgb in load_test_images(args.art, (w, h))]
        domains = {"screen": (root / "screen", screen_test),
                   "art": (root / "art", art_crops[half:])}
        domains = {name: domains[name] for name in args.domains}
        # --seen: the same measure on images the adaptation saw (centre crops of the first
        # ones), to tell a capacity limit from a generalisation gap.
        seen = {"screen": [render_screen(i, (h, w)) for i in range(args.test)],
                "art": art_crops[:half]}
        available = {name: len(list(folder.iterdir())) for name, (folder, _) in domains.items()}
        photo_curve = curve(base, photos)
        model_bytes = sum(t.numel() * t.element_size() for t in source.state_dict().values())
        plains = {name: curve(base, test) for name, (_, test) in domains.items()}
        rows = []
        # Counts outermost, in the order given: the first count's rows of every domain
        # are written first (an interrupted run keeps them).
        for count in args.counts:
            for name, (folder, test) in domains.items():
                plain = plains[name]
                n = available[name] if count == 0 else count
                if n > available[name]:
                    continue
                seen_images = seen[name][: min(n, args.test)]
                plain_seen = curve(base, seen_images) if args.seen else []
                for method in args.methods:
                    t0 = time.time()
                    result = adapt(source, folder, method, name, lambdas, steps=args.steps,
                                   images=n, lr=args.lr, patch=args.patch,
                                   output_filter=args.output_filter, progress=False)
                    seconds = time.time() - t0
                    path = root / f"{name}-{method}-{n}.bin"
                    if result.adapter is not None:  # the domain codes through the adapter
                        save_adapter(result.adapter, path)
                        codec = Codec(source, args.model, rd_lambdas=lambdas,
                                      adapters=[result.adapter])
                        domain = name
                    else:
                        save_model_file(result.model, path)
                        codec = Codec(result.model, rd_lambdas=lambdas)
                        domain = None
                    target = curve(codec, test, domain)
                    forgetting = bd_rate(photo_curve, curve(codec, photos))
                    seen_curve = curve(codec, seen_images, domain) if args.seen else []
                    gain = bd_rate(plain, target)
                    seen_cell = (f" {fmt(bd_rate(plain_seen, seen_curve), '+.1f', '%')} |"
                                 if args.seen else "")
                    per_width = []
                    for b, q in plain:
                        at = psnr_at_rate(target, b)
                        per_width.append(fmt(None if at is None else at - q, "+.2f"))
                    size = path.stat().st_size
                    rows.append(f"| {name} | {n} | {method} | {fmt(gain, '+.1f', '%')} |"
                                f"{seen_cell} "
                                f"{', '.join(per_width)} | {fmt(forgetting, '+.2f', '%')} | "
                                f"{size:,} ({size / model_bytes:.1%}) | {seconds:.0f} |")
                    print(rows[-1], flush=True)
                    # Written after every row: an interrupted run keeps what it measured.
                    write_section(_section(args), _body(args, rows, len(photos), partial=True))
    body = _body(args, rows, len(photos))
    write_section(_section(args), body)
    print(body)


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
    if args.seen:
        changes.append(("seen", "also on the images adapted on"))
    return changes


def _section(args: argparse.Namespace) -> str:
    """The section's name: "adaptation" for the default run, else what the run changed."""
    parts = ["adaptation"]
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
                 f"centre crops {w}x{h} of the first {args.test} images the adaptation "
                 "used (all of them, when fewer). A large gap between the two columns says that "
                 "generalising from few images, not the adapter's capacity, limits the gain.")
    where = " and ".join({"screen": "screens", "art": "illustrations"}[d] for d in args.domains)
    changed = "".join(f", {words}" for _, words in _settings(args))
    return f"""## Domain adaptation: {which} on {where} (`{args.model}`{changed})

Each method adapted `{args.model}` for {args.steps} steps (every width jointly, patch {args.patch},
batch 8, Adam with cosine decay from {rates}; the widths' training λ{filt}) on the first N
images of the domain (screens rendered at {w}x{h}; illustrations whole, 1280x720), on 2 CPU
cores. Test images, centre crops {w}x{h}: {args.test} screens never adapted on (seeds
1000+), and the second half of `../shared/data/art`; source domain:
{photos} of the shared photos. Target BD-rate: adapted against unadapted on the
domain's test images (negative: the adaptation saves bits); ΔPSNR at the unadapted points'
rates, widest first; forgetting: BD-rate on the photos, adapted against unadapted (adapter
methods code photos without the adapter, so it is 0 by construction, and the test suite
checks the bits).{seen_note}

{table_head(["domain", "images", "method", "target BD-rate",
             *(["BD-rate on adapted images"] if args.seen else []),
             "target ΔPSNR per width (dB)",
             "forgetting (photos)", "size, bytes (share of the model)", "seconds"])}
{chr(10).join(rows)}{PARTIAL if partial else ""}"""

if __name__ == "__main__":
    main()
