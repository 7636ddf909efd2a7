"""Write the golden files of a shipped model: a small file it wrote, and the image it decodes to.

tests/test_golden.py decodes every golden file with today's code and compares the result
with the committed image, so that no change can stop a shipped model from decoding the files
it wrote. Run once when a model is shipped (never over an existing golden file):

    python tools/make_golden.py MODEL_NAME [--width W] [--lmbda L] [--domain D] [--scale S]
        [--resampling box] [--screen | --index-map | --residual]

``--domain``: a file coded with the model's shipped adapter for that domain (golden files
``MODEL.DOMAIN.*``), so that the adapter's files keep decoding too. ``--scale``: a file
coded upsampled (``slimcodec compress --scale``; golden files ``MODEL.scaleS.*``, with
``--resampling box`` ``MODEL.scaleS-box.*``), so that such files keep decoding, their
resampling included. ``--screen``: a crop of a generated screen instead of the sample photo,
coded with the palette the encoder chooses (golden files ``MODEL.palette.*``; it must choose
one), so that files with a palette keep decoding, the snap included. ``--index-map``: the
same crop, whose file must carry exact blocks (golden files ``MODEL.index-map.*``), so that
the blocks' indices keep decoding. ``--residual``: a crop of a screen with subpixel text,
whose file must carry a residual (golden files ``MODEL.residual.*``; give ``--lmbda``, a
high one), so that the residual keeps decoding.
"""

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from slimcodec.api import codec_for
from slimcodec.cli import sample_image
from slimcodec.domains.screen import render_screen
from slimcodec.utils.image import load_rgb

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--width", type=int)
    p.add_argument("--lmbda", type=float)
    p.add_argument("--domain", help="a shipped adapter's domain")
    p.add_argument("--scale", type=float, default=1.0, help="code the image upsampled")
    p.add_argument("--resampling", default="lanczos", help="--scale's filter")
    p.add_argument("--screen", action="store_true", help="a screen's crop, with a palette")
    p.add_argument("--index-map", action="store_true",
                   help="a screen's crop, with a palette and exact blocks")
    p.add_argument("--residual", action="store_true",
                   help="a crop of a screen with subpixel text, with a residual")
    args = p.parse_args()
    args.screen |= args.index_map
    stem = f"{args.model}.{args.domain}" if args.domain else args.model
    stem += f".scale{args.scale:g}" if args.scale != 1 else ""
    stem += f"-{args.resampling}" if args.scale != 1 and args.resampling != "lanczos" else ""
    stem += (".index-map" if args.index_map else ".palette" if args.screen
             else ".residual" if args.residual else "")
    files = {ext: GOLDEN / f"{stem}.{ext}" for ext in ("slc", "png", "json")}
    if files["slc"].exists():
        raise SystemExit(f"{files['slc']} exists: golden files are never rewritten")
    codec = codec_for(args.model)
    if args.screen:
        crop = np.ascontiguousarray(render_screen(1000, (512, 768))[40:90, 20:83])
    elif args.residual:
        crop = np.ascontiguousarray(
            render_screen(1001, (512, 768), text="subpixel")[32:82, 16:79])
    else:
        rgb, _ = load_rgb(sample_image())
        crop = np.ascontiguousarray(rgb[200:250, 180:243])  # 63x50: odd sizes, some padding
    data = codec.encode_rgb(crop, args.width, lmbda=args.lmbda, domain=args.domain,
                            scale=args.scale, resampling=args.resampling)
    decoded, header = codec.decode_rgb(data)
    if args.screen and not header.palette:
        raise SystemExit("the encoder chose no palette for the screen's crop")
    if args.index_map and not header.index_map:
        raise SystemExit("the encoder chose no exact block for the screen's crop")
    if args.residual and not header.residual:
        raise SystemExit("the encoder chose no residual for the screen's crop")
    GOLDEN.mkdir(exist_ok=True)
    files["slc"].write_bytes(data)
    Image.fromarray(decoded).save(files["png"])
    files["json"].write_text(json.dumps({
        "model": args.model, "fingerprint": codec.fingerprint.hex(), "width": header.width,
        "lmbda": header.rate if args.lmbda is not None else None,
        **({"domain": args.domain, "domain_id": header.domain} if args.domain else {}),
        **({"coded_size": list(header.coded_size), "resampling": header.resampling}
           if header.coded_size else {}),
        **({"palette": len(header.palette), "palette_reach": header.palette_reach}
           if header.palette else {}),
        **({"index_map_bytes": len(header.index_map)} if header.index_map else {}),
        **({"residual_bytes": len(header.residual)} if header.residual else {})},
        indent=2) + "\n")
    print(f"{files['slc']}: {len(data)} bytes, width {header.width}")


if __name__ == "__main__":
    main()
