"""Long fuzz run: hostile containers, all with valid CRCs, against the shipped decoder.

Files are made by `slimcodec.bitstream.hostile` from small files the shipped `slimcae` wrote
at every width (with a model that ships domain adapters, also through each adapter): byte
mutations, random and high-byte (0xFF) payloads, cut, extended and spliced strings, forged
image sizes and forged header fields. A child process decodes them one by one through
`Codec.decode_rgb` (with `--edge`, through the torch-free runtime's `EdgeCodec.decode_rgb`,
with a bundle of the model and its adapters) and reports each outcome; a child that dies (a
crash) or goes silent for `--timeout` seconds on one file (a hang) is counted, replaced, and
the run goes on with the next file. Peak memory is each child's own high-water mark
(`VmHWM`).

    python benchmarks/fuzz.py [--files 10000] [--seed 0] [--timeout 60] [--model slimcae]
                              [--edge]
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path

import numpy as np
from common import Child, outcome_table, write_section
from slimcodec_edge.onnx_export import export_bundle

from slimcodec.api import codec_for
from slimcodec.bitstream.hostile import KINDS, hostile_files
from slimcodec.codec import DEFAULT_MAX_PIXELS, Codec

#: The child's decoder, from its argument: a model (name or file), or a bundle's folder.
DECODERS = {
    "torch": "from slimcodec.api import codec_for\ncodec = codec_for(sys.argv[1])",
    "edge": "from slimcodec_edge.edge import EdgeCodec\ncodec = EdgeCodec(sys.argv[1])",
}
PRELUDE = "import sys, warnings\nwarnings.filterwarnings('ignore')\n"

#: The child, after :data:`PRELUDE` and its decoder: one JSON line per file path read.
CHILD = r"""
import json, time
from pathlib import Path
from slimcodec.bitstream.hostile import entropy_decoder_refused
from slimcodec.errors import SlimcodecError
for line in sys.stdin:
    path = Path(line.strip())
    t0 = time.perf_counter()
    try:
        codec.decode_rgb(path.read_bytes())
        outcome = "decoded"
    except SlimcodecError as exc:
        outcome = type(exc).__name__
        if entropy_decoder_refused(exc):
            outcome += " (entropy decoder)"
    except Exception as exc:  # anything untyped is a finding
        outcome = "UNTYPED " + type(exc).__name__ + ": " + str(exc).splitlines()[0][:200]
    rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    print(json.dumps([path.name, outcome, time.perf_counter() - t0, rss]), flush=True)
"""



def child_code(decoder: str) -> str:
    """The child's program for a decoder of :data:`DECODERS`."""
    return PRELUDE + DECODERS[decoder] + CHILD


def valid_files(codec: Codec, rng: np.random.Generator) -> list[bytes]:
    """Small files of ``codec`` at every width: with the model alone and through each of
    its adapters. (No mixed files: the string attacks of `slimcodec.bitstream.hostile`
    take a header without a mixture block, and its "forged mixture" kind adds one.)"""
    ways = [{}, *({"domain": a.domain} for a in codec.adapters.values())]
    valid = []
    for h, w in [(16, 16), (17, 33), (48, 64), (96, 80), (128, 128)]:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        img = np.cumsum(img, axis=1, dtype=np.uint16).astype(np.uint8)  # some structure
        valid += [codec.encode_rgb(img, width, **way) for width in codec.widths
                  for way in ways]
    return valid


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--model", default="slimcae",
                   help="the model whose files are attacked (a name or a model file)")
    p.add_argument("--edge", action="store_true",
                   help="decode with the torch-free runtime, a bundle of the model and its "
                        "shipped adapters")
    args = p.parse_args()
    codec = codec_for(args.model)
    valid = valid_files(codec, np.random.default_rng(args.seed))
    counts: dict[str, collections.Counter] = {k: collections.Counter() for k in KINDS}
    findings, peak_kib, slowest = [], 0, (0.0, "")
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        decoder = args.model
        if args.edge:
            decoder = str(Path(tmp) / "bundle")
            export_bundle(codec.model, decoder, str(args.model),
                          adapters=list(codec.adapters.values()),
                          rd_lambdas=codec.rd_lambdas, default_domain=codec.default_domain)
        code = child_code("edge" if args.edge else "torch")
        child = Child(code, decoder)
        for i, (kind, data) in enumerate(hostile_files(valid, args.files, args.seed)):
            path = Path(tmp) / f"{i:06d}.slc"
            path.write_bytes(data)
            report = child.ask(path, args.timeout)
            if isinstance(report, str):  # crash or hang: keep the file, restart the child
                counts[kind][report] += 1
                findings.append((report, kind, data.hex()[:200]))
                child.close()
                child = Child(code, decoder)
                continue
            _, outcome, seconds, rss = report
            counts[kind][outcome.split(":")[0]] += 1
            if outcome.startswith("UNTYPED"):
                findings.append((outcome, kind, data.hex()[:200]))
            peak_kib = max(peak_kib, rss)
            slowest = max(slowest, (seconds, kind))
            path.unlink()
            if (i + 1) % 1000 == 0:
                print(f"{i + 1} files, {time.time() - t0:.0f} s", flush=True)
        child.close()
    rows, total = outcome_table(counts)
    outcomes = sorted(total)
    crashes, hangs = total["crash"], total["hang"]
    untyped = sum(v for k, v in total.items() if k.startswith("UNTYPED"))
    title = "" if args.model == "slimcae" else f" of `{args.model}`"
    runtime = "the edge runtime's" if args.edge else "the"
    through = (f" (and through each of its {len(codec.adapters)} adapters)"
               if codec.adapters else "")
    decoded_by = ("`EdgeCodec.decode_rgb` (a bundle of the model and its adapters)"
                  if args.edge else "`Codec.decode_rgb`")
    body = f"""## Fuzzing {runtime} decoder{title}: {args.files} hostile files with valid CRCs

Made by `slimcodec.bitstream.hostile` (seed {args.seed}) from {len(valid)} small files
`{args.model}` wrote at every width{through}, decoded by {decoded_by} in a child process
(`--max-pixels` at its default, {DEFAULT_MAX_PIXELS}). "(entropy decoder)": refused by the
bounds-checked rANS decoder itself, past every container check.

**{crashes} crashes, {hangs} hangs (no answer within {args.timeout:g} s), {untyped} untyped
errors.** Peak RSS of a decoding process: {peak_kib / 1024:.0f} MiB. Slowest file:
{slowest[0]:.2f} s ({slowest[1]}). Wall time {time.time() - t0:.0f} s.

| kind | files | {" | ".join(outcomes)} |
|---|---:|{"---:|" * len(outcomes)}
{chr(10).join(rows)}
"""
    if findings:
        body += "\nFindings (kind, first bytes):\n\n" + "\n".join(
            f"- {f[0]} ({f[1]}): `{f[2]}`" for f in findings[:20])
    name = "fuzz" if args.model == "slimcae" else f"fuzz-{Path(args.model).stem}"
    write_section(name.replace("fuzz", "fuzz-edge") if args.edge else name, body)
    print(body)


if __name__ == "__main__":
    main()
