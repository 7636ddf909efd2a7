"""The gate over several domain adapters (issue 13): one adapter per image, or a mixture.

Two `adapters` domains are adapted as `benchmarks/adaptation.py` adapts them (screens on
rendered screens, illustrations on the first half of `../shared/data/art`), and both are
loaded. Each test image is then coded four ways:

* `source`: the source codec (no adapter);
* `named`: through the adapter of the image's own domain, as a user who knows the domain
  codes it (`--domain screen`); photos: the source codec;
* `auto`: the encoder's gate picks one adapter or none per image, by RD loss
  (`--domain auto`);
* `mix`: the gate weighs the decoder adapters per image (`--domain mix`: every weighting on
  a grid of quarters, the weights in the file; Presta et al., DCC 2024);
* `learned`: the learned gate predicts the weights (`slimcodec gate`, then `--domain gate`),
  trained as a classifier of the domains on crops of the images the adapters adapted on and
  of `--source-photos` (the first 20; not the test photos), as Presta et al. train theirs;
  the latent coded with the entropy models of the adapter it weighs most, where that one
  has its own; the encoder keeps its file where its RD loss is below the source codec's.

Test sets: held-out screens, held-out illustrations, photos (the source domain), and pages:
held-out screens with a photo set into a third of their area, content between the domains.

    python benchmarks/gate_mixture.py [--model slimcae] [--steps 400] [--[no-]entropy-models] \\
        [--source-photos ../shared/data/train_photos]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from adaptation import add_data_arguments, delta_psnr_cells, pooled
from common import (
    centre_crop,
    fmt,
    held_out_screens,
    load_test_images,
    table_head,
    write_section,
)
from PIL import Image

from slimcodec.adaptation import adapt, train_gate
from slimcodec.codec import Codec
from slimcodec.domains.screen import render_screen, write_screens
from slimcodec.evaluate import evaluate
from slimcodec.models import ModulatedSlimCAE
from slimcodec.utils.rd import bd_rate
from slimcodec.zoo import load_model

CODERS = ("source", "named", "auto", "mix", "learned")


def page(screen: np.ndarray, photo: np.ndarray) -> np.ndarray:
    """A screen with a photo set in, as on a web page: its right half, the middle 2/3 of its
    height (a third of the area)."""
    h, w = screen.shape[:2]
    out = screen.copy()
    top, bottom = h // 6, h - h // 6
    out[top:bottom, w // 2 :] = centre_crop(photo, (w - w // 2, bottom - top))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="slimcae")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--entropy-models", action=argparse.BooleanOptionalAction, default=False,
                   help="the adapters with their domains' own entropy models")
    p.add_argument("--source-photos", default="../shared/data/train_photos",
                   help="photos the learned gate learns the source domain from")
    add_data_arguments(p)
    args = p.parse_args()
    w, h = (int(v) for v in args.crop.split("x"))
    source = load_model(args.model)
    lambdas = source.file_meta.get("lambdas")
    photos = [rgb for _, rgb in load_test_images(args.photos, (w, h))]
    art = load_test_images(args.art, None)
    half = len(art) // 2
    screens = [rgb for _, rgb in held_out_screens(args.test, (w, h))]
    sets = {
        "screens": (screens, "screen"),
        "illustrations": ([centre_crop(rgb, (w, h)) for _, rgb in art[half:]], "art"),
        "photos": (photos[: args.test], None),
        # Other photos than the photo set's, in screens other than the screen set's.
        "pages": ([page(render_screen(2000 + i, (h, w)), photos[-1 - i])
                   for i in range(args.test)], "screen"),
    }
    adapters = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_screens(root / "screen", args.screens, size=(h, w))
        (root / "art").mkdir()
        for name, rgb in art[:half]:
            Image.fromarray(rgb).save(root / "art" / name)
        for domain in ("screen", "art"):
            t0 = time.time()
            adapters.append(adapt(source, root / domain, "adapters", domain, lambdas,
                                  steps=args.steps, entropy_models=args.entropy_models,
                                  progress=False).adapter)
            print(f"{domain}: adapted in {time.time() - t0:.0f} s", flush=True)
        gate = train_gate(source, adapters, {d: root / d for d in ("screen", "art")},
                          args.source_photos, images=20)
        print(f"gate: {gate.accuracy:.1%} of {gate.crops} training crops to their own "
              f"domain, trained in {gate.seconds:.0f} s", flush=True)
    codec = Codec(source, args.model, rd_lambdas=lambdas, adapters=adapters)
    codec.gate = gate.gate
    rows = []
    for set_name, (images, own) in sets.items():
        plain = None
        for coder in CODERS:
            domain = {"source": None, "named": own, "learned": "gate"}.get(coder, coder)
            # scale 1: the model at the image's own size, so that the coder is what differs
            result = evaluate(codec, images, progress=False, domain=domain, scale=1)
            target = pooled([result]).points
            plain = plain or target  # the source's, coded first
            enc = np.mean([r["enc_ms"] for r in result["per_image"]])
            dec = np.mean([r["dec_ms"] for r in result["per_image"]])
            rows.append(f"| {set_name} | {coder} | {fmt(bd_rate(plain, target), '+.1f', '%')} "
                        f"| {delta_psnr_cells(plain, target)} | {enc:.0f} | {dec:.0f} |")
            print(rows[-1], flush=True)
    body = _body(args, rows, isinstance(source, ModulatedSlimCAE))
    slug = "gate_mixture" + ("" if args.model == "slimcae" else f"-{args.model}")
    write_section(slug + ("-entropy" if args.entropy_models else ""), body)
    print(body)


def _body(args: argparse.Namespace, rows: list[str], variable: bool) -> str:
    own = " with their domains' own entropy models" if args.entropy_models else ""
    order = ("the envelope's points, lowest rate first" if variable
             else "the widths, widest first")
    title = f"the gate over two adapters, one per image or mixed (`{args.model}`{own})"
    return f"""## Domain adaptation: {title}

Two `adapters` domains{own}, adapted for {args.steps} steps as in the `adaptation` section
(screens: {args.screens} rendered; illustrations: the first half of `../shared/data/art`), both
loaded.
Each test set (centre crops {args.crop}; {args.test} images per set but illustrations, the
second half of the art) is coded by the source codec, through the adapter of its own
domain (`named`; pages: screen; photos: the source codec), by the gate that picks one
adapter or none per image (`auto`), and by the gate that weighs the decoder adapters per
image on a grid of quarters, the weights in the file (`mix`), and by the learned gate that
predicts the weights (`learned`; trained on 32 crops of 256x256 from each of the adaptation
folders and the first 20 of `--source-photos`, at every width; the latent coded with the
entropy models of the adapter it weighs most, where that one has its own; its file kept
where its RD loss is below the source codec's). Pages: held-out screens with a
photo in the right half of their middle two thirds of height. BD-rate and ΔPSNR (at the
source's rates, {order}) against the source codec; encode and decode time per image
(milliseconds, mean over every operating point; compare them within one run).

{table_head(["test set", "coder", "BD-rate", "ΔPSNR (dB)", "encode ms", "decode ms"])}
{chr(10).join(rows)}"""


if __name__ == "__main__":
    main()
