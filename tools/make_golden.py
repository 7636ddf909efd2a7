"""Write the golden files of a shipped model: a small file it wrote, and the image it decodes to.

tests/test_golden.py decodes every golden file with today's code and compares the result
with the committed image, so that no change can stop a shipped model from decoding the files
it wrote. Run once when a model is shipped (never over an existing golden file):

    python tools/make_golden.py MODEL_NAME [--width W] [--lmbda L]
"""

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from slimcodec.api import codec_for
from slimcodec.cli import sample_image
from slimcodec.utils.image import load_rgb

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--width", type=int)
    p.add_argument("--lmbda", type=float)
    args = p.parse_args()
    stem = GOLDEN / args.model
    if stem.with_suffix(".slc").exists():
        raise SystemExit(f"{stem}.slc exists: golden files are never rewritten")
    codec = codec_for(args.model)
    rgb, _ = load_rgb(sample_image())
    crop = np.ascontiguousarray(rgb[200:250, 180:243])  # 63x50: odd sizes, some padding
    data = codec.encode_rgb(crop, args.width, lmbda=args.lmbda)
    decoded, header = codec.decode_rgb(data)
    GOLDEN.mkdir(exist_ok=True)
    stem.with_suffix(".slc").write_bytes(data)
    Image.fromarray(decoded).save(stem.with_suffix(".png"))
    stem.with_suffix(".json").write_text(json.dumps({
        "model": args.model, "fingerprint": codec.fingerprint.hex(), "width": header.width,
        "lmbda": header.rate if args.lmbda is not None else None}, indent=2) + "\n")
    print(f"{stem}.slc: {len(data)} bytes, width {header.width}")


if __name__ == "__main__":
    main()
