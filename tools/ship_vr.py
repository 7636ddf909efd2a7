"""Install a trained variable-rate run as shipped weights under NAME and write its model card.

The card's training facts come from the run's own files (model file metadata,
metrics.jsonl) and from ``--stage`` rows, which are kept in the weights file's metadata so
that ``--card-only`` can rewrite the card later; its results from the `vr_rd`,
`rate_control` and `vr_penalty` sections of benchmarks/RESULTS.md (``vr_rd-NAME`` and so on
for a model other than `slimcae-vr`), and the training images' licences from the data
folder's SOURCES.md, which is copied beside the weights. A weights file that exists is never
overwritten: a retrain ships under a new name (the registry keeps every shipped fingerprint
decoding), registered in slimcodec/zoo/registry.py.

    python tools/ship_vr.py --name slimcae-vr2 --run ../runs-vr2/vr \\
        --sources ../shared/data/train_photos/SOURCES.md \\
        --stage "start=..." --stage "training=..." --stage "commands=..." --note "..."
    python tools/ship_vr.py --name slimcae-vr2 --card-only --sources ... [--note "..."]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

from slimcodec.zoo import WEIGHTS_DIR, fingerprint, load_model_file, model_meta, save_model_file
from slimcodec.zoo.checkpoint import build, read_model_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from variable_rate import section_name  # noqa: E402  (how the benchmark names its sections)

# The training record of `slimcae-vr`, shipped before records were kept in the weights file.
LEGACY_STAGES = {"slimcae-vr": [
    ["stage 1 (GPU)", "6500 steps on one NVIDIA H100 (24 min of training), from the shipped "
                      "`slimcae`'s transforms (modulations at the identity, no latent gain), "
                      "patch 256², batch 8, Adam 3e-4 with cosine decay (5,000 steps, then "
                      "extended to 6,500), aux Adam 1e-3; training images carried as JPEG q92 "
                      "4:4:4"],
    ["stage 2 (CPU)", "the latent gain added (`slimcodec train --init` stretches each anchor's "
                      "density by the gain at its λ), then 2750 steps on 2 CPU cores (2.1 h of "
                      "training, the machine shared with other work), patch 96², batch 8, Adam "
                      "2e-4 with cosine decay to step 3000; the run restarted once at step 250 "
                      "with a shorter schedule"],
    ["commands", "GPU: `STEPS=5000 bash benchmarks/train_vr.sh`, then `STEPS=6500`, `DATA=` the "
                 "JPEG copy, other knobs at their defaults (patch 256, batch 8, lr 3e-4); CPU: "
                 "`INIT=runs-vr/gpu-stage.pt RUNS=runs-vr/cpu STEPS=3000 PATCH=96 BATCH=8 "
                 "LR=2e-4 DATA=../shared/data/train_photos bash tools/with-venv.sh bash "
                 "benchmarks/train_vr.sh`"],
]}


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


def ship(name: str, run: Path, sources: Path, stages: list[list[str]]) -> None:
    target = WEIGHTS_DIR / f"{name}.pt"
    if target.exists():
        raise SystemExit(f"{target} exists: ship a retrain under a new name")
    steps, seconds = steps_and_seconds(run / "metrics.jsonl")
    # Rebuilt from the file's config and weights with today's code: a config key added
    # while the run trained (its default is the old behaviour) changes the fingerprint.
    payload = read_model_file(run / "model.pt")
    model = build(payload["arch"], payload["config"])
    model.load_state_dict(payload["state_dict"])
    meta = model_meta(run / "model.pt")
    meta.update({"summary": f"{name}: {steps} steps ({seconds / 3600:.1f} h) on 185 photos",
                 "steps": steps, "training_seconds": round(seconds), "training": stages})
    save_model_file(model.eval(), target, meta=meta)
    shutil.copy(sources, WEIGHTS_DIR / f"{name}.SOURCES.md")


def write_card(name: str, sources: Path, note: str) -> None:
    target = WEIGHTS_DIR / f"{name}.pt"
    model = load_model_file(target)
    stages = model_meta(target).get("training") or LEGACY_STAGES.get(name)
    if not stages:
        raise SystemExit(f"{target} keeps no training record: ship it with --stage rows")
    ranges = ", ".join(f"{w}: {lo:g}–{hi:g}" for w, (lo, hi) in
                       zip(model.widths, model.lambda_ranges, strict=True))
    anchors = (f"{model.rate_anchors} entropy models per width at log-spaced λ over "
               f"{model.lambda_bounds[0]:g}–{model.lambda_bounds[1]:g}"
               if model.rate_anchors > 1 else "one entropy model per width for all λ")
    fields = [
        ("architecture", f"`slimcae-vr`: {len(model.widths)} widths, {anchors}, "
                         f"{'latent gain, ' if model.config.get('latent_gain') else ''}"
                         f"modulation MLPs of {model.hidden} hidden units"),
        ("λ range per width", ranges),
        ("data", f"`../shared/data/train_photos`: 185 real photographs from 13 Debian/PyPI "
                 f"packages (licences below and in [{name}.SOURCES.md]({name}.SOURCES.md)); "
                 "random crops, flips"),
        *stages,
        ("parameters", f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M, float32"),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in fields)
    card = f"""# Model card: `{name}`

SlimCAE-VR: the slimmable autoencoder of Yang et al. (CVPR 2021) with the λ-modulation of
Yang et al., *Variable Rate Deep Image Compression with Modulated Autoencoder* (IEEE SPL
2020) (`slimcodec/models/modulated.py`). One model covers a continuous rate inside each of
its widths {", ".join(map(str, model.widths))} (SlimGDN+). Fingerprint `{fingerprint(model).hex()}`.

{note}

| field | value |
|---|---|
{table}

## Rate-distortion (from `benchmarks/RESULTS.md`)

{section(section_name("vr_rd", name))}

## Rate control

{section(section_name("rate_control", name))}

## Continuous λ against fixed λ

{section("vr_penalty")}

## Training data licences

{_licence_table(sources)}

The per-image record (file, package, original file, size, licence) is in
[{name}.SOURCES.md]({name}.SOURCES.md), copied from the data folder.
"""
    (WEIGHTS_DIR / f"{name}.md").write_text(card)
    print(f"{target}: fingerprint {fingerprint(model).hex()}")


def _licence_table(sources: Path) -> str:
    text = sources.read_text()
    start = text.index("| package |")
    end = text.index("\n\n", start)
    return text[start:end]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True, help="the registered name the weights ship under")
    p.add_argument("--run", type=Path, help="the run folder (its model.pt, metrics.jsonl)")
    p.add_argument("--sources", type=Path, required=True,
                   help="SOURCES.md of the training images")
    p.add_argument("--stage", action="append", default=[], metavar="LABEL=TEXT",
                   help="a row of the card's training record (repeatable, in order)")
    p.add_argument("--note", help="a paragraph for the card's head (--card-only keeps the "
                                  "card's own when none is given)")
    p.add_argument("--card-only", action="store_true",
                   help="rewrite the card of weights already shipped (fresh benchmarks)")
    args = p.parse_args()
    if not args.card_only:
        if args.run is None or not args.stage:
            p.error("shipping needs --run and at least one --stage")
        ship(args.name, args.run, args.sources, [s.split("=", 1) for s in args.stage])
    note = args.note
    if note is None:
        note = existing_note(args.name) if args.card_only else ""
    write_card(args.name, args.sources, note)


def existing_note(name: str) -> str:
    """The head paragraph of a shipped card (often edited by hand since): between the
    fingerprint sentence and the training table."""
    card = WEIGHTS_DIR / f"{name}.md"
    if not card.exists():
        return ""
    m = re.search(r"Fingerprint `[0-9a-f]+`\.\n\n(.*?)\n\n\| field \| value \|",
                  card.read_text(), re.S)
    return m.group(1) if m else ""


if __name__ == "__main__":
    main()
