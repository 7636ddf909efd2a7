"""Install a trained hyperprior run as the shipped weights of NAME (never over an existing
file: a retrain ships under a new name), with its training record in the file's metadata
and the training images' licences beside it. The model card is written by hand from the
`hyperprior-NAME` section of benchmarks/RESULTS.md.

    python tools/ship_hp.py --name slimcae-hp --run ../runs-hp/a \\
        --sources ../shared/data/train_photos/SOURCES.md \\
        --command "python -m slimcodec train ..." [--summary "..."] [--seconds S] [--half]

``--half`` rounds every parameter to float16 and stores it so (half the file; the model is
then the rounded one: measure it after shipping).
"""

import argparse
import json
import shutil
from pathlib import Path

from slimcodec.zoo import WEIGHTS_DIR, load_model_file, model_meta, save_model_file
from slimcodec.zoo.checkpoint import round_to_half


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True)
    p.add_argument("--run", required=True, help="the run folder (its model.pt)")
    p.add_argument("--sources", required=True, help="the training images' SOURCES.md")
    p.add_argument("--command", required=True, help="the training command(s), for the record")
    p.add_argument("--summary", help="one line on what the model is (default: the first "
                                     "hyperprior's)")
    p.add_argument("--seconds", type=float, help="training time in all (default: the run's)")
    p.add_argument("--half", action="store_true", help="parameters rounded to float16")
    args = p.parse_args()
    target = WEIGHTS_DIR / f"{args.name}.pt"
    if target.exists():
        raise SystemExit(f"{target} exists: shipped weights are never overwritten")
    run = Path(args.run)
    model = load_model_file(run / "model.pt")
    meta = model_meta(run / "model.pt")
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
               if line.strip()]
    meta.update({
        "summary": args.summary or (
            f"{args.name}: slimcae-vr5's transforms with a slimmable mean-scale hyperprior "
            f"trained {metrics[-1]['step']} steps (slimcodec train --stage entropy)"),
        "command": args.command,
        # since the run's last start, unless given
        "training_seconds": args.seconds or metrics[-1].get("seconds"),
    })
    if args.half:
        round_to_half(model)
    fp = save_model_file(model, target, meta=meta, half=args.half)
    shutil.copy(args.sources, WEIGHTS_DIR / f"{args.name}.SOURCES.md")
    print(f"{target}: fingerprint {fp.hex()}, {metrics[-1]['step']} steps")


if __name__ == "__main__":
    main()
