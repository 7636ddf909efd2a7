"""What `slimcodec models` prints beside each shipped model: its rate range on held-out photos.

For every model that ships weights, the lowest rate (narrowest width, lowest λ) and the
highest (widest width, highest λ; a single-rate model: its narrowest and widest widths),
averaged over the photos, with their PSNR. Writes `slimcodec/zoo/weights/measured.json`
(read by `slimcodec models`) and the section "Shipped models: rate range on held-out photos"
of RESULTS.md.

    python benchmarks/model_table.py [--images ../shared/data/photos] [--crop 768x512]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from common import load_test_images, parse_crop, table_head, write_section

from slimcodec.api import codec_for
from slimcodec.utils.io import atomic_write
from slimcodec.utils.metrics import psnr
from slimcodec.zoo import list_models
from slimcodec.zoo.catalog import DEFAULT_MODEL, MEASURED


def rate_ends(name: str, rgbs: list[np.ndarray]) -> dict:
    """Mean bpp and PSNR at the model's lowest and highest operating points."""
    codec = codec_for(name)
    ends = {}
    for end, width in (("low", codec.widths[-1]), ("high", codec.widths[0])):
        lmbda = None
        if codec.variable_rate:
            lo, hi = codec.lambda_range(width)
            lmbda = lo if end == "low" else hi
        bpps, psnrs = [], []
        for rgb in rgbs:
            data = codec.encode_rgb(rgb, width, lmbda=lmbda)
            bpps.append(8 * len(data) / (rgb.shape[0] * rgb.shape[1]))
            psnrs.append(psnr(rgb, codec.decode_rgb(data)[0]))
        ends[end] = {"width": width, "lmbda": lmbda, "bpp": float(np.mean(bpps)),
                     "psnr": float(np.mean(psnrs))}
    return {**ends, "fingerprint": codec.fingerprint.hex()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", default="../shared/data/photos")
    p.add_argument("--crop", default="768x512")
    args = p.parse_args()
    images = load_test_images(args.images, parse_crop(args.crop))
    rgbs = [rgb for _, rgb in images]
    measured = {"images": f"{len(rgbs)} photos of {Path(args.images).name}/, {args.crop}",
                "models": {name: rate_ends(name, rgbs) for name in list_models(pretrained=True)}}
    atomic_write(MEASURED, lambda f: f.write((json.dumps(measured, indent=1) + "\n").encode()))
    rows = [table_head(["model", "lowest rate", "highest rate"])]
    for name, ends in measured["models"].items():
        lo, hi = ends["low"], ends["high"]
        mark = " (default)" if name == DEFAULT_MODEL else ""
        rows.append(f"| `{name}`{mark} | {lo['bpp']:.3f} bpp, {lo['psnr']:.2f} dB (width "
                    f"{lo['width']}) | {hi['bpp']:.3f} bpp, {hi['psnr']:.2f} dB (width "
                    f"{hi['width']}) |")
    write_section("model-table",
                  "## Shipped models: rate range on held-out photos\n\n"
                  f"Mean over {measured['images']}; what `slimcodec models` prints.\n\n"
                  + "\n".join(rows))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
