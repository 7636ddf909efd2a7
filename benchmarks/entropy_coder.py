"""Speed of slimcodec's bounds-checked rANS decoder (and encoder) against CompressAI's.

Both code the same latent of the same entropy model (the shipped `slimcae`'s, at every
width) in the same format; each is timed over repeats in the same run, interleaved, and the
table gives the medians and their ratio. CompressAI's decoder takes Python lists, as
`EntropyBottleneck.decompress` gives it; the list conversion is timed apart.

    python benchmarks/entropy_coder.py [--size 768x512] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from common import table_head, write_section
from compressai import ans

from slimcodec.bitstream import rans
from slimcodec.cli import sample_image
from slimcodec.codec import Codec
from slimcodec.tiling import analyze
from slimcodec.utils.image import load_rgb
from slimcodec.zoo import load_model

COLUMNS = ["width", "symbols", "bytes", "ours: decode ms", "CompressAI: decode ms",
           "decode ratio", "ours: encode ms", "CompressAI: encode ms", "encode ratio",
           "list conversion ms"]


def timed(repeats: int, fn, *args) -> float:
    """Median seconds of ``fn(*args)`` over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="768x512")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    rgb, _ = load_rgb(sample_image())
    rgb = np.resize(rgb, (h, w, 3)) if rgb.shape[:2] != (h, w) else rgb
    torch.set_num_threads(1)
    codec = Codec(load_model("slimcae"))
    rows = []
    for width in codec.widths:
        with codec.operating_point(width, None) as model:
            symbols = analyze(lambda a: model.analysis(torch.from_numpy(a)).numpy(), rgb, 16,
                              lambda a: model.quantize_latent(torch.from_numpy(a)).numpy())
            tables = model.entropy_tables()
        data = rans.encode(symbols, tables)
        n = symbols.size
        indexes = np.repeat(np.arange(symbols.shape[0]), n // symbols.shape[0]).tolist()
        cdfs, lengths, offsets = (tables.cdfs.tolist(), tables.lengths.tolist(),
                                  tables.offsets.tolist())
        flat = symbols.reshape(-1).tolist()
        theirs = ans.RansDecoder().decode_with_indexes(data, indexes, cdfs, lengths, offsets)
        assert np.array_equal(np.array(theirs, np.int32), symbols.reshape(-1))
        assert ans.RansEncoder().encode_with_indexes(flat, indexes, cdfs, lengths, offsets) == data
        r = args.repeats
        ours_dec = timed(r, rans.decode, data, tables, symbols.shape)
        their_dec = timed(r, ans.RansDecoder().decode_with_indexes, data, indexes, cdfs,
                          lengths, offsets)
        lists = timed(r, lambda a, b: (a.tolist(), b.tolist()), symbols.reshape(-1), tables.cdfs)
        ours_enc = timed(r, rans.encode, symbols, tables)
        their_enc = timed(r, ans.RansEncoder().encode_with_indexes, flat, indexes, cdfs, lengths,
                          offsets)
        rows.append(f"| {width} | {n} | {len(data)} | {1e3 * ours_dec:.2f} | "
                    f"{1e3 * their_dec:.2f} | {their_dec / ours_dec:.2f}x | "
                    f"{1e3 * ours_enc:.2f} | {1e3 * their_enc:.2f} | {their_enc / ours_enc:.2f}x | "
                    f"{1e3 * lists:.2f} |")
        print(rows[-1], flush=True)
    body = f"""## Entropy coder: bounds-checked rANS against CompressAI's

The latent of the bundled sample resized to {w}x{h}, coded by the shipped `slimcae`'s entropy
model at each width. Both coders produce and accept the same bytes (checked in the run).
Median of {args.repeats} runs each, one thread; ratio > 1 means ours is faster. CompressAI's
coder also needs its inputs as Python lists (last column: converting symbols and CDFs once),
which `EntropyBottleneck.compress`/`decompress` pay on every call; it is not included in its
times.

{table_head(COLUMNS)}
{chr(10).join(rows)}

The compiled coder is in use: {rans.COMPILED}."""
    write_section("entropy_coder", body)


if __name__ == "__main__":
    main()
