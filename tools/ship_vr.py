"""Install a trained run as the shipped `slimcae-vr` weights and write its model card.

The card's training facts come from the runs' own files (model file metadata,
metrics.jsonl), its results from the `vr_rd`, `rate_control` and `vr_penalty` sections of
benchmarks/RESULTS.md, and the training images' licences from the data folder's SOURCES.md,
which is copied beside the weights. A weights file that exists is never overwritten: a
retrain ships under a new name (the registry keeps every shipped fingerprint decoding).

    python tools/ship_vr.py --run runs-vr/cpu/vr --gpu-metrics runs-vr/gpu-metrics.jsonl \\
        --sources ../shared/data/train_photos/SOURCES.md --note "..."
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

from slimcodec.zoo import (
    WEIGHTS_DIR,
    fingerprint,
    load_model_file,
    model_meta,
    save_model_file,
)
from slimcodec.zoo.checkpoint import build, read_model_file

ROOT = Path(__file__).resolve().parents[1]
NAME = "slimcae-vr"


def section(name: str) -> str:
    text = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    m = re.search(rf"<!-- begin {name} -->(.*?)<!-- end {name} -->", text, re.S)
    if not m:
        return f"(section `{name}` not yet in benchmarks/RESULTS.md)"
    body = re.sub(r"^## .*\n", "", m.group(1).strip())
    return body.replace("](figures/", "](../../../benchmarks/figures/")


def steps_and_seconds(metrics: Path) -> tuple[int, float]:
    """Steps, and training seconds summed over the run's sessions (each restarts the clock)."""
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    total, previous = 0.0, 0.0
    for r in records:
        if r["seconds"] < previous:  # a new session
            total += previous
        previous = r["seconds"]
    return records[-1]["step"], total + previous


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="the CPU run folder (its model.pt)")
    p.add_argument("--gpu-metrics", required=True, help="metrics.jsonl of the GPU stage")
    p.add_argument("--sources", required=True, help="SOURCES.md of the training images")
    p.add_argument("--note", default="", help="a paragraph for the card's head")
    p.add_argument("--card-only", action="store_true",
                   help="rewrite the card of the weights already shipped (fresh benchmarks)")
    args = p.parse_args()
    target = WEIGHTS_DIR / f"{NAME}.pt"
    run = Path(args.run)
    gpu_steps, gpu_seconds = steps_and_seconds(Path(args.gpu_metrics))
    cpu_steps, cpu_seconds = steps_and_seconds(run / "metrics.jsonl")
    if args.card_only:
        model = load_model_file(target)
        fp = fingerprint(model)
    else:
        if target.exists():
            raise SystemExit(f"{target} exists: ship a retrain under a new name")
        # Rebuilt from the file's config and weights with today's code: a config key added
        # while the run trained (its default is the old behaviour) changes the fingerprint.
        payload = read_model_file(run / "model.pt")
        model = build(payload["arch"], payload["config"])
        model.load_state_dict(payload["state_dict"])
        model.eval()
        meta = model_meta(run / "model.pt")
        meta.update({"summary": f"SlimCAE-VR: {gpu_steps} GPU steps (H100, "
                                f"{gpu_seconds / 60:.0f} min) + {cpu_steps - 250} CPU steps "
                                "(2 cores) on 185 photos",
                     "gpu_steps": gpu_steps, "cpu_steps": cpu_steps})
        fp = save_model_file(model, target, meta=meta)
        shutil.copy(args.sources, WEIGHTS_DIR / f"{NAME}.SOURCES.md")
    ranges = ", ".join(f"{w}: {lo:g}–{hi:g}" for w, (lo, hi) in
                       zip(model.widths, model.lambda_ranges, strict=True))
    fields = [
        ("architecture", f"`slimcae-vr`: {len(model.widths)} widths, {model.rate_anchors} "
                         f"entropy models per width at log-spaced λ over "
                         f"{model.lambda_bounds[0]:g}–{model.lambda_bounds[1]:g}, latent gain, "
                         f"modulation MLPs of {model.hidden} hidden units"),
        ("λ range per width", ranges),
        ("data", f"`../shared/data/train_photos`: 185 real photographs from 13 Debian/PyPI "
                 f"packages (licences below and in [{NAME}.SOURCES.md]({NAME}.SOURCES.md)); "
                 "random crops, flips"),
        ("stage 1 (GPU)", f"{gpu_steps} steps on one NVIDIA H100 ({gpu_seconds / 60:.0f} min "
                          "of training), from the shipped `slimcae`'s transforms (modulations "
                          "at the identity, no latent gain), patch 256², batch 8, Adam 3e-4 "
                          "with cosine decay (5,000 steps, then extended to 6,500), aux Adam "
                          "1e-3; training images carried as JPEG q92 4:4:4"),
        ("stage 2 (CPU)", "the latent gain added (`slimcodec train --init` stretches each "
                          "anchor's density by the gain at its λ), then "
                          f"{cpu_steps - 250} steps on 2 CPU cores ({cpu_seconds / 3600:.1f} h "
                          "of training, the machine shared with other work), patch 96², "
                          f"batch 8, Adam 2e-4 with cosine decay to step {cpu_steps}; the run "
                          "restarted once at step 250 with a shorter schedule"),
        ("commands", "GPU: `STEPS=5000 bash benchmarks/train_vr.sh`, then `STEPS=6500`, "
                     "`DATA=` the JPEG copy, other knobs at their defaults (patch 256, batch "
                     "8, lr 3e-4); CPU: `INIT=runs-vr/gpu-stage.pt RUNS=runs-vr/cpu STEPS=3000 "
                     "PATCH=96 BATCH=8 LR=2e-4 DATA=../shared/data/train_photos bash "
                     "tools/with-venv.sh bash benchmarks/train_vr.sh`"),
        ("parameters", f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M, float32"),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in fields)
    card = f"""# Model card: `{NAME}`

SlimCAE-VR: the slimmable autoencoder of Yang et al. (CVPR 2021) with the λ-modulation of
Yang et al., *Variable Rate Deep Image Compression with Modulated Autoencoder* (IEEE SPL
2020), a per-channel latent gain and one entropy model per width and λ anchor
(`slimcodec/models/modulated.py`). One model covers a continuous rate inside each of its
widths 192, 144, 96, 72, 48 (SlimGDN+). Fingerprint `{fp.hex()}`.

{args.note}

| field | value |
|---|---|
{table}

## Rate-distortion (from `benchmarks/RESULTS.md`)

{section("vr_rd")}

## Rate control

{section("rate_control")}

## Continuous λ against fixed λ

{section("vr_penalty")}

## Training data licences

{_licence_table(Path(args.sources))}

The per-image record (file, package, original file, size, licence) is in
[{NAME}.SOURCES.md]({NAME}.SOURCES.md), copied from the data folder.
"""
    (WEIGHTS_DIR / f"{NAME}.md").write_text(card)
    print(f"{target}: fingerprint {fp.hex()}")


def _licence_table(sources: Path) -> str:
    text = sources.read_text()
    start = text.index("| package |")
    end = text.index("\n\n", start)
    return text[start:end]


if __name__ == "__main__":
    main()
