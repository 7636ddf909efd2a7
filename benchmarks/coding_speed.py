"""Encode and decode time of a model's PyTorch codec against another checkout's, side by side.

Both checkouts code the same images (held-out photos and generated screens, centre crops)
at each width, at the width's default λ: the model alone (``--domain source``), through the
codec's default gate (the default model's ``auto``: the model alone and each shipped
adapter, the lowest RD loss kept), and the decode of each file. Each checkout runs in its
own child process (its own ``slimcodec``), the two alternating for ``--rounds`` rounds (the
order swapped each round) so that both see the same machine; a time is the median of its
rounds. The table gives each kind of coding's total time over the images for both
checkouts, their ratio, and whether the two wrote the same files and decoded the same
pixels (the transforms' float arithmetic may move a pixel by one level).

    git worktree add ../before COMMIT && (cd ../before && bash tools/with-venv.sh true)
    python benchmarks/coding_speed.py --against ../before --against-label COMMIT \
        [--model M (default: the default model)] [--widths 192 48] [--count 12] \
        [--screens 6] [--rounds 3] [--crop 768x512]

Section ``coding-speed-MODEL``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import held_out_screens, load_test_images, parse_crop, table_head, write_section

from slimcodec.zoo import DEFAULT_MODEL

CHILD = r"""
import json, sys, time, warnings
from pathlib import Path
warnings.filterwarnings("ignore")
import numpy as np
from slimcodec.codec import Codec
name, work, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
widths = [int(w) for w in sys.argv[4].split(",")]
codec = Codec.load(name)
gate = codec.default_domain  # what the front doors code through
codec.decode_rgb(codec.encode_rgb(np.zeros((64, 64, 3), np.uint8), widths[0]))  # warm up
def timed(call):
    t0 = time.perf_counter()
    result = call()
    return result, time.perf_counter() - t0
times = {}
for src in sorted(work.glob("*.npy")):
    rgb = np.load(src)
    for width in widths:
        key = f"{src.stem}@{width}"
        alone, t_alone = timed(lambda: codec.encode_rgb(rgb, width, domain="source"))
        gated, t_gate = timed(lambda: codec.encode_rgb(rgb, width, domain=gate))
        (pixels, _), t_dec_alone = timed(lambda: codec.decode_rgb(alone))
        (gated_pixels, _), t_dec_gate = timed(lambda: codec.decode_rgb(gated))
        (out / f"{key}.source.slc").write_bytes(alone)
        (out / f"{key}.gate.slc").write_bytes(gated)
        np.save(out / f"{key}.source.npy", pixels)
        np.save(out / f"{key}.gate.npy", gated_pixels)
        times[key] = {"encode": t_alone, "encode, gate": t_gate, "decode": t_dec_alone,
                      "decode, gate's file": t_dec_gate}
print(json.dumps({"gate": gate, "times": times}))
"""

KINDS = ("encode", "encode, gate", "decode", "decode, gate's file")


def run_child(name: str, work: Path, out: Path, widths: list[int], cwd: Path | None) -> dict:
    """One pass over every image in a fresh process; ``cwd``: whose ``slimcodec`` it
    imports (``-c`` puts the working directory first on the path)."""
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-c", CHILD, name, str(work), str(out),
                           ",".join(map(str, widths))], capture_output=True, text=True, cwd=cwd)
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(here: Path, there: Path) -> tuple[int, int, int, float]:
    """Files with the same bytes, files compared, the largest pixel difference between the
    two decodes and the share of pixels that differ."""
    same = total = worst = 0
    differing = pixels = 0
    for slc in sorted(here.glob("*.slc")):
        total += 1
        same += slc.read_bytes() == (there / slc.name).read_bytes()
        a = np.load(slc.with_suffix(".npy")).astype(int)
        b = np.load((there / slc.name).with_suffix(".npy")).astype(int)
        diff = np.abs(a - b)
        worst = max(worst, int(diff.max()))
        differing += int((diff > 0).any(axis=-1).sum())
        pixels += diff.shape[0] * diff.shape[1]
    return same, total, worst, differing / pixels


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--against", type=Path, required=True,
                   help="another checkout (with its compiled coder) to measure side by side")
    p.add_argument("--against-label", default=None, help="its name in the table")
    p.add_argument("--widths", type=int, nargs="+", default=[192, 48])
    p.add_argument("--photos", default="../shared/data/photos")
    p.add_argument("--count", type=int, default=12, help="photos (the first, by name)")
    p.add_argument("--screens", type=int, default=6, help="held-out generated screens")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--crop", default="768x512")
    args = p.parse_args()
    crop = parse_crop(args.crop)
    label = args.against_label or args.against.name
    images = load_test_images(args.photos, crop)[: args.count]
    images += held_out_screens(args.screens, crop)
    with tempfile.TemporaryDirectory(prefix="slimcodec-speed-") as tmp:
        work = Path(tmp)
        for name, rgb in images:
            np.save(work / f"{Path(name).stem}.npy", rgb)
        runs: dict[str, list[dict]] = {"here": [], label: []}
        for r in range(args.rounds):
            order = [("here", None), (label, args.against.resolve())]
            for who, cwd in order if r % 2 == 0 else order[::-1]:
                result = run_child(args.model, work, work / who, args.widths, cwd)
                runs[who].append(result)
                print(f"round {r + 1}: {who} done", flush=True)
        same, total, worst, share = compare(work / "here", work / label)
    gate = runs["here"][0]["gate"] or "none (the model alone)"
    keys = sorted(runs["here"][0]["times"])

    def total_seconds(who: str, kind: str, width: int) -> float:
        return sum(float(np.median([run["times"][k][kind] for run in runs[who]]))
                   for k in keys if k.endswith(f"@{width}"))

    n = len(images)
    rows = []
    for width in args.widths:
        for kind in KINDS:
            now, before = total_seconds("here", kind, width), total_seconds(label, kind, width)
            rows.append(f"| {width} | {kind} | {1000 * before / n:.0f} | {1000 * now / n:.0f} "
                        f"| **{before / now:.2f}x** |")
    body = f"""## Coding speed: `{args.model}`'s PyTorch codec against {label}

{len(images) - args.screens} photos from `{args.photos}` and {args.screens} held-out generated
screens, centre crops {args.crop}, each width at its default λ, on the CPU. Both checkouts
code every image in their own process, alternating over {args.rounds} rounds; each time is the
median of its rounds, the table's the mean over the {n} images (ms) and the ratio of the
totals (above 1: this checkout is faster). "encode, gate": through the codec's default gate
({gate}), what `slimcodec compress` does; "decode, gate's file": that file's decode, what
`slimcodec decompress` does.

{table_head(["width", "coding", f"{label} ms", "this checkout ms", "speed-up"])}
{chr(10).join(rows)}

Files: {same} of {total} the same bytes. Decoded pixels: at most {worst} level(s) apart,
{100 * share:.3f}% of pixels differ."""
    print(body)
    write_section(f"coding-speed-{args.model}", body)


if __name__ == "__main__":
    main()
