"""What the training recipe reaches per hour: each round's λ-scheduled model on the test images.

A round is one ``benchmarks/train_default.sh`` run (``RUNS`` folder); each continues from
the one before (``PREV``). For each round's model: the steps and wall-clock hours spent so
far (joint training and λ-scheduling, as the model card counts them), its BD-rate against
JPEG 4:2:0, the bpp span of its widths, and its widest and narrowest points.

    python benchmarks/training_progress.py --images runs/data/val --rounds runs runs2 runs3
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import classical_rd, fmt, load_test_images, model_rd, parse_crop, write_section

from slimcodec.training.run_logs import format_lambdas, round_compute
from slimcodec.training.trainer import saved_config
from slimcodec.utils.rd import bd_rate, bpp_span
from slimcodec.zoo import model_meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", required=True, help="folder of test images")
    ap.add_argument("--crop", default="768x512", help="centre crop WxH ('' for none)")
    ap.add_argument("--rounds", nargs="+", required=True, help="RUNS folders, in order")
    args = ap.parse_args()

    images = load_test_images(args.images, parse_crop(args.crop))
    jpeg = classical_rd(images, "JPEG 4:2:0")
    rows = ["| round | steps so far | hours so far | stage-1 λ | decoder input "
            "| BD-rate vs JPEG 4:2:0 | bpp span | widest bpp / PSNR | narrowest bpp / PSNR |",
            "|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    steps, seconds = 0, 0.0
    for runs in map(Path, args.rounds):
        cfg1 = saved_config(model_meta(runs / "stage1" / "model.pt")["config"])
        round_steps, round_seconds = round_compute(runs)
        steps, seconds = steps + round_steps, seconds + round_seconds
        points = model_rd(str(runs / "default" / "model.pt"), images)
        curve = [(p["bpp"], p["psnr"]) for p in points]
        wide, narrow = points[0], points[-1]
        rows.append(
            f"| `{runs}` | {steps} | {seconds / 3600:.2f} | {format_lambdas(cfg1['lambdas'])} "
            f"| {cfg1['decoder_quantizer']} "
            f"| {fmt(bd_rate(jpeg, curve), '+.1f', '%')} | {bpp_span(curve):.2f}× "
            f"| {wide['bpp']:.3f} / {wide['psnr']:.2f} | {narrow['bpp']:.3f} / "
            f"{narrow['psnr']:.2f} |")
    body = f"""## Training progress: what the recipe reaches per hour

Each round's λ-scheduled model, on {len(images)} images, centre crop {args.crop or 'none'}.
Steps and wall-clock hours are cumulative and count joint training and λ-scheduling (the
comparison models of each round are not counted); the hardware is that of the stamp below unless a
round's model card says otherwise.

{chr(10).join(rows)}"""
    write_section("training_progress", body)
    print(body)


if __name__ == "__main__":
    main()
