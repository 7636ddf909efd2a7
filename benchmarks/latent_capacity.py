"""Where a model's quality saturates: the transform's ceiling and the latent channels in use.

For each width at the low and high end of its λ range (a single-rate model: its one λ per
width), on the test photos: the estimated rate and the PSNR of the coded latent (rounded),
the PSNR with the latent *not* quantised at all (what the transforms alone can reach, an
upper bound on the quality that more rate can buy), and how many latent channels carry
information (estimated rate of at least 0.01 bit per latent position; the others sit on
their median whatever the image). A model whose unquantised PSNR is barely above its coded
PSNR at the top of its range is limited by its transforms, not by its rate.

    python benchmarks/latent_capacity.py --images ../shared/data/photos --crop 768x512 \\
        [--models slimcae-vr5 slimcae]
    python benchmarks/latent_capacity.py --images screens --models slimcae-hp --name screens

``--images screens`` measures the 6 held-out generated screens (seeds 1000-1005, as
``content_rd.py``'s) instead of a folder; ``--name`` writes the section
``latent_capacity-NAME`` instead of ``latent_capacity``.

``--probe RUN_DIR`` measures a training run while it trains, from its last checkpoint: the
widest and narrowest width at both ends of their λ range, on 6 crops of 256², on one
thread (a few seconds, so that the run loses little; docs/gpu_training.md says why that
matters), printed, not written to RESULTS.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from common import (
    fmt,
    held_out_screens,
    load_test_images,
    parse_crop,
    table_head,
    write_section,
)

from slimcodec.training.trainer import CHECKPOINT, checkpoint_model
from slimcodec.utils.metrics import psnr
from slimcodec.utils.tensors import from_tensor, to_tensor
from slimcodec.zoo import load_model

LIVE_BITS = 0.01  # bits per latent position below which a channel counts as collapsed


@torch.no_grad()
def measure(model, images: list) -> dict[str, float]:
    """Mean over images of bpp, coded PSNR, unquantised PSNR; channels live in any image."""
    bpp = coded = ceiling = 0.0
    live = None
    for rgb in images:
        x = to_tensor(rgb)
        out = model(x)
        bits = -torch.log2(out["likelihoods"]["y"]).sum(dim=(0, 2, 3))
        positions = out["likelihoods"]["y"][0, 0].numel()
        used = bits / positions >= LIVE_BITS
        live = used if live is None else live | used
        bpp += float(bits.sum()) / (x.shape[2] * x.shape[3])
        coded += psnr(rgb, from_tensor(out["x_hat"]))
        ceiling += psnr(rgb, from_tensor(model.synthesis(model.analysis(x))))
    n = len(images)
    return {"bpp": bpp / n, "psnr": coded / n, "ceiling": ceiling / n,
            "live": int(live.sum()), "channels": int(live.numel())}


def rows_for(name: str, images: list, model=None, widths=None) -> list[str]:
    model = model if model is not None else load_model(name).eval()
    rows = []
    for width in widths or model.widths:
        model.set_width(width)
        if hasattr(model, "lambda_range"):
            settings = [(f"{lmbda:g}", lmbda) for lmbda in model.lambda_range(width)]
        else:
            settings = [("trained", None)]
        for label, lmbda in settings:
            if lmbda is not None:
                model.set_lambda(lmbda)
            m = measure(model, images)
            rows.append(f"| `{name}` | {width} | {label} | {m['bpp']:.3f} | {m['psnr']:.2f} | "
                        f"{m['ceiling']:.2f} | {fmt(m['ceiling'] - m['psnr'], '+.2f')} | "
                        f"{m['live']} / {m['channels']} |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", default="../shared/data/photos")
    p.add_argument("--crop", default="768x512")
    p.add_argument("--models", nargs="+", default=["slimcae-vr5", "slimcae"])
    p.add_argument("--name", help="section suffix (default: none)")
    p.add_argument("--probe", type=Path, metavar="RUN_DIR",
                   help="a training run's last checkpoint, briefly (see above)")
    args = p.parse_args()
    if args.probe:
        torch.set_num_threads(1)
        images = [rgb for _, rgb in load_test_images(args.images, (256, 256))][:6]
        if not (args.probe / CHECKPOINT).is_file():
            p.error(f"{args.probe}: no {CHECKPOINT} (not a training run's folder)")
        model, step = checkpoint_model(args.probe)
        print(f"step {step}")
        print("\n".join(rows_for(str(args.probe), images, model,
                                 [max(model.widths), min(model.widths)])))
        return
    crop = parse_crop(args.crop)
    if args.images == "screens":
        images = [rgb for _, rgb in held_out_screens(6, crop)]
        what = f"held-out generated screens (seeds 1000-1005), {args.crop}"
    else:
        images = [rgb for _, rgb in load_test_images(args.images, crop)]
        what = f"test photos, centre crops {args.crop}"
    rows = [row for name in args.models for row in rows_for(name, images)]
    title = f" ({args.name})" if args.name else ""
    body = f"""## Latent capacity: the transforms' ceiling and the channels in use{title}

{len(images)} {what}. bpp: estimated from the entropy model's likelihoods, not
from files; PSNR coded: the latent rounded, as in a file (8-bit PSNR of the decoded image,
as everywhere); PSNR unquantised: the latent passed to the decoder as it
leaves the encoder, the transforms' own ceiling; live channels: latent channels with an
estimated rate of at least {LIVE_BITS} bit per position in at least one image.

{table_head(["model", "width", "λ", "bpp", "PSNR coded (dB)", "PSNR unquantised (dB)",
             "headroom (dB)", "live channels"])}
{chr(10).join(rows)}"""
    write_section("latent_capacity" + (f"-{args.name}" if args.name else ""), body)
    print(body)


if __name__ == "__main__":
    main()
