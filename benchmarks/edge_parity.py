"""The edge runtime against PyTorch on the same files: symbols, and pixels.

For each model and width, every test image is encoded by each runtime and each file is
decoded by both. Decoding a file gives identical entropy symbols in both (one decoder); the
pixels differ only where the runtimes' float arithmetic rounds a value differently, by at
most one level: this measures how often. The encoders' symbols are compared as well (the
analysis transforms' float arithmetic can flip a rounding tie).

    python benchmarks/edge_parity.py --images ../shared/data/photos --crop 768x512 \\
        [--models slimcae slimcae-vr5] [--count 4]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from common import load_test_images, parse_crop, table_head, write_section
from slimcodec_edge.edge import EdgeCodec
from slimcodec_edge.onnx_export import export_bundle

from slimcodec.api import codec_for
from slimcodec.bitstream import rans, unpack

COLUMNS = ["model", "width", "pixel values differing", "max difference",
           "encoder symbols differing"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", default="../shared/data/photos")
    p.add_argument("--crop", default="768x512")
    p.add_argument("--count", type=int, default=4)
    p.add_argument("--models", nargs="+", default=["slimcae", "slimcae-vr5"])
    args = p.parse_args()
    crop = parse_crop(args.crop)
    images = load_test_images(args.images, crop)[: args.count]
    rows = []
    for name in args.models:
        codec = codec_for(name)
        with tempfile.TemporaryDirectory() as tmp:
            edge = EdgeCodec(export_bundle(codec.model, Path(tmp) / "b", name))
            for width in codec.widths:
                lmbda = codec.default_lambda(width) if codec.variable_rate else None
                differ = total = worst = symbols_differ = symbols = 0
                for _, rgb in images:
                    files = [codec.encode_rgb(rgb, width, lmbda=lmbda),
                             edge.encode_rgb(rgb, width, lmbda=lmbda)]
                    for data in files:
                        a, _ = codec.decode_rgb(data)
                        b, _ = edge.decode_rgb(data)
                        diff = np.abs(a.astype(int) - b.astype(int))
                        differ += int((diff > 0).sum())
                        total += diff.size
                        worst = max(worst, int(diff.max()))
                    with codec.operating_point(width, lmbda) as model:
                        tables = model.entropy_tables()
                    shape = edge.decode_latent(files[0])[0].shape
                    s0, s1 = (rans.decode(unpack(d).strings[0], tables, shape) for d in files)
                    symbols_differ += int((s0 != s1).sum())
                    symbols += s0.size
                rows.append(f"| {name} | {width} | {differ / total:.2e} | {worst} | "
                            f"{symbols_differ / symbols:.2e} |")
                print(rows[-1], flush=True)
    h, w = images[0][1].shape[:2]
    body = f"""## Edge runtime against PyTorch: the same files, decoded by both

{len(images)} images, centre crop {w}x{h}; each image encoded by both runtimes, each file
decoded by both (a variable-rate model at each width's middle λ). Decoded entropy symbols are
identical by construction (one bounds-checked decoder); the table gives the fraction of
decoded pixel values that differ between the runtimes and the largest difference (levels),
and the fraction of latent symbols on which the two encoders disagree.

{table_head(COLUMNS)}
{chr(10).join(rows)}"""
    write_section("edge_parity", body)
    print(body)


if __name__ == "__main__":
    main()
