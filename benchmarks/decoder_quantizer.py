"""Noise or straight-through rounding for the decoder's input in training: which codes better?

Fine-tunes one model twice from the same weights, with the same seed, data, steps and λ:
once with the decoder seeing the noisy latent ỹ = y + u (Ballé et al.'s relaxation), once
with it seeing the rounded latent through a straight-through gradient, as at test time
(Minnen & Singh, ICIP 2020). The rate term uses ỹ in both. Reports each result's RD points
(real container bytes) on the test images and its RD loss, the training objective.

    python benchmarks/decoder_quantizer.py --data runs2/data/train --images runs2/data/val \
        --init runs2/single-96/model.pt --steps 800
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import load_test_images, model_rd, parse_crop, rd_loss, write_section

from slimcodec.training import TrainConfig, train
from slimcodec.zoo import load_model, model_meta

QUANTIZERS = {"noise": "noise (ỹ = y + u)", "ste": "rounding, straight-through"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--init", required=True, help="model file both fine-tunes start from")
    ap.add_argument("--crop", default="768x512")
    ap.add_argument("--runs", default="runs/decoder-quantizer")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()

    start = load_model(args.init)
    lambdas = model_meta(args.init)["lambdas"]
    images = load_test_images(args.images, parse_crop(args.crop))
    points = {"start": model_rd(args.init, images)}
    for quantizer in QUANTIZERS:
        out = Path(args.runs) / quantizer
        cfg = TrainConfig(data=args.data, out=str(out), widths=list(start.widths),
                          lambdas=lambdas, gdn=start.gdn, init=args.init, steps=args.steps,
                          patch=args.patch, batch=args.batch, lr=args.lr, aux_lr=1e-2,
                          seed=args.seed, decoder_quantizer=quantizer, checkpoint_every=250)
        train(cfg, resume=True)
        points[quantizer] = model_rd(str(out / "model.pt"), images)

    widths = start.widths
    rows = ["| decoder input | " + " | ".join(f"width {w} bpp / PSNR" for w in widths)
            + " | RD loss |", "|---|" + "---:|" * (len(widths) + 1)]
    for key, label in {"start": "start model", **QUANTIZERS}.items():
        cells = " | ".join(f"{p['bpp']:.4f} / {p['psnr']:.2f}" for p in points[key])
        rows.append(f"| {label} | {cells} | {rd_loss(lambdas, points[key]):.4f} |")
    body = f"""## Decoder input in training: noise or straight-through rounding

`{args.init}` (widths {', '.join(map(str, widths))}, λ {lambdas}) fine-tuned {args.steps} steps
twice from the same weights (patch {args.patch}, batch {args.batch}, cosine from lr
{args.lr}, seed {args.seed}); evaluated on {len(images)} images, centre crop
{args.crop or 'none'}.

{chr(10).join(rows)}

RD loss: mean over the widths of λ·255²·MSE + bpp on the test images (lower is better)."""
    write_section("decoder_quantizer", body)
    print(body)


if __name__ == "__main__":
    main()
