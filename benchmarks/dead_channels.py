"""Dead latent channels and what reviving them does at once (``slimcodec train --revive``).

On the test photos at the widest width's top λ: how many latent channels carry less than
``DEAD_BITS`` bits per position, the highest live one, and the encoder's last λ-modulation
of the dead and the live channels (what switches them off); then the widest and narrowest
width's top, coded, before and after :func:`~slimcodec.training.revive.revive_channels`
with ``--shift``, untrained.

    python benchmarks/dead_channels.py [--model slimcae-hp] [--shift -2]
"""

from __future__ import annotations

import argparse
import copy

import torch
from common import load_test_images, parse_crop, table_head, write_section
from latent_capacity import measure

from slimcodec.training.revive import DEAD_BITS, dead_channels, revive_channels
from slimcodec.utils.tensors import to_tensor
from slimcodec.zoo import load_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="slimcae-hp")
    p.add_argument("--shift", type=float, default=-2.0)
    p.add_argument("--images", default="../shared/data/photos")
    p.add_argument("--crop", default="768x512")
    args = p.parse_args()
    rgbs = [rgb for _, rgb in load_test_images(args.images, parse_crop(args.crop))]
    model = load_model(args.model).eval()
    with torch.no_grad():
        dead = dead_channels(model, torch.cat([to_tensor(rgb) for rgb in rgbs]))
        widest = max(model.widths)
        model.set_width(widest)
        top = model.lambda_range(widest)[1]
        t, _ = model.conditions(torch.tensor([top]))
        scale = model.modulation_a[-1](t).flatten()
        revived = copy.deepcopy(model)
        revive_channels(revived, dead, args.shift)
    live = ~dead
    rows = []
    for width in (widest, min(model.widths)):
        for name, m in (("as shipped", model), (f"revived, shift {args.shift:g}", revived)):
            m.set_width(width)
            m.set_lambda(m.lambda_range(width)[1])
            r = measure(m, rgbs)
            rows.append(f"| {width} | {name} | {r['bpp']:.3f} | {r['psnr']:.2f} | "
                        f"{r['ceiling']:.2f} | {r['live']} / {r['channels']} |")
    body = f"""## Dead latent channels, and reviving them untrained (`{args.model}`)

{len(rgbs)} test photos, centre crops {args.crop}. Dead: less than {DEAD_BITS} bit per latent
position in every photo at width {widest}, λ = {top:g}: **{int(dead.sum())} of {len(dead)}**
channels; the highest live one is {int(live.nonzero().max())}. The encoder's last
λ-modulation there: below 0.3 for {int((scale[dead] < 0.3).sum())} of the dead channels
(median {float(scale[dead].median()):.3f}); the live channels' lowest
{float(scale[live].min()):.2f}, median {float(scale[live].median()):.2f}. Each width's top λ,
estimated bpp, before and after `revive_channels` (no training):

{table_head(["width", "model", "bpp", "PSNR coded (dB)", "PSNR unquantised (dB)",
             "live channels"])}
{chr(10).join(rows)}"""
    write_section(f"dead_channels-{args.model}", body)
    print(body)


if __name__ == "__main__":
    main()
