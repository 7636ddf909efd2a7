"""Peak memory of encoding and decoding 1, 12 and 48 megapixel images, tiled against whole.

Each measurement runs in a fresh child process and reports its peak resident set size
(`VmHWM` in /proc/self/status; `ru_maxrss` would inherit the parent's peak across exec)
minus the peak it had with the model loaded and a tiny image coded, so the figures are
what coding the image costs. Tiled is the codec as shipped (tiles of 32 latent positions,
512 pixels, with a halo of 3); "whole" runs the transforms on the whole image at once (one
tile), as before tiling, and is only run where it fits in memory. The PSNR columns compare
both decodes of the same file with the source.

    python benchmarks/memory.py [--model M (default: the default model)] [--sizes 1 12 48] \
        [--width 192] [--whole-up-to 12] [--against DIR [--against-label LABEL]] \
        [--runtime torch|edge] [--tiles 16 32 64] [--domain auto]

``--domain auto`` encodes through the gate over the model's shipped adapters (what
``slimcodec compress`` does with the default), section ``memory-MODEL-auto``.

``--runtime edge`` measures the torch-free edge runtime (``slimcodec_edge.EdgeCodec``, all
threads) on a bundle of the model exported once at the start, instead of ``Codec``.

``--tiles N ...`` measures the tile size instead (``--tile`` of ``slimcodec compress`` and
``slimcodec-edge``): each image coded with tiles of N latent positions, its memory and time
against the default tile's in the same run, and whether the files and decoded pixels are the
default's (section ``memory-tiles-MODEL``).

``--against DIR`` also codes each image tiled with another checkout's code (its children run
in DIR, so they import DIR's ``slimcodec`` and, from its ``export/``, ``slimcodec_edge``; it
needs its compiled coder, as after ``tools/with-venv.sh true`` there), side by side in the
same run: e.g. a commit before a change, ``git worktree add ../before COMMIT``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from common import table_head, write_section

from slimcodec.zoo import DEFAULT_MODEL

CHILD = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import importlib.util, os
import numpy as np
from PIL import Image
if os.path.isfile("export/__init__.py"):  # this checkout's edge runtime, as its slimcodec
    spec = importlib.util.spec_from_file_location("slimcodec_edge", "export/__init__.py",
                                                  submodule_search_locations=["export"])
    sys.modules["slimcodec_edge"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sys.modules["slimcodec_edge"])
def status(key):  # kB; VmHWM is this process's own peak (ru_maxrss inherits the parent's)
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
mode, src, slc, out, width, tile, name = sys.argv[1:8]
name, _, domain = name.partition("@")  # NAME@DOMAIN: encode with that domain (a gate)
domain = domain or None
if name.startswith("edge:"):  # the torch-free runtime on an exported bundle
    from slimcodec_edge.edge import EdgeCodec
    codec = EdgeCodec(name[5:], tile=int(tile), max_pixels=1 << 28)
elif domain:  # with the model's shipped adapters
    from slimcodec.codec import Codec
    codec = Codec.load(name, tile=int(tile), max_pixels=1 << 28)
else:
    from slimcodec.codec import Codec
    from slimcodec.zoo import load_model
    codec = Codec(load_model(name), tile=int(tile), max_pixels=1 << 28)
rgb = np.load(src, mmap_mode="r") if mode == "encode" else None
warm = np.zeros((16, 16, 3), np.uint8)
codec.decode_rgb(codec.encode_rgb(warm, int(width), domain=domain))  # warm up
base = status("VmHWM")
t0 = time.perf_counter()
if mode == "encode":
    data = codec.encode_rgb(np.asarray(rgb), int(width), domain=domain)
    open(slc, "wb").write(data)
else:
    image, _ = codec.decode_rgb(open(slc, "rb").read())
    np.save(out, image)
seconds = time.perf_counter() - t0
peak = status("VmHWM")
print(json.dumps({"base_kib": base, "peak_kib": peak, "seconds": seconds}))
"""


COLUMNS = ["MP (size)", "bpp", "tiled encode MiB", "tiled decode MiB", "decode bytes/pixel",
           "encode s", "decode s", "whole encode MiB", "whole decode MiB", "PSNR tiled",
           "PSNR whole", "ΔPSNR"]


def child(*args: str, cwd: Path | None = None) -> dict:
    """One measurement in a fresh process; ``cwd``: whose ``slimcodec`` it imports (``-c``
    puts the working directory first on the path)."""
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True,
                          cwd=cwd)
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def code(src: Path, slc: Path, out: Path, width: int, tile: str, coder: str,
         cwd: Path | None = None) -> tuple[dict, dict]:
    """Encode ``src`` to ``slc``, then decode it to ``out``, each in its own child."""
    args = (str(src), str(slc), str(out), str(width), tile, coder)
    return child("encode", *args, cwd=cwd), child("decode", *args, cwd=cwd)


def test_image(megapixels: float) -> np.ndarray:
    """A photo-like image of about ``megapixels`` at 4:3: the bundled sample, mirrored."""
    from slimcodec.cli import sample_image
    from slimcodec.utils.image import load_rgb

    sample, _ = load_rgb(sample_image())
    h = round((megapixels * 1e6 * 3 / 4) ** 0.5)
    w = round(h * 4 / 3)
    tile = np.concatenate([sample, sample[:, ::-1]], 1)
    tile = np.concatenate([tile, tile[::-1]], 0)
    reps = (-(-h // tile.shape[0]), -(-w // tile.shape[1]), 1)
    return np.ascontiguousarray(np.tile(tile, reps)[:h, :w])


def saved_image(megapixels: float, work: Path) -> tuple[np.ndarray, Path]:
    """:func:`test_image` and the file the children read it from."""
    rgb = test_image(megapixels)
    src = work / f"{megapixels}.npy"
    np.save(src, rgb)
    return rgb, src


def mib(measured: dict) -> float:
    """A child's peak above its peak with the model loaded, in MiB."""
    return (measured["peak_kib"] - measured["base_kib"]) / 1024


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--sizes", type=float, nargs="+", default=[1, 12, 48])
    p.add_argument("--width", type=int, default=192)
    p.add_argument("--whole-up-to", type=float, default=12,
                   help="also run whole-image coding up to this many megapixels")
    p.add_argument("--work", default="/tmp/slimcodec-memory")
    p.add_argument("--against", type=Path, help="another checkout to measure side by side")
    p.add_argument("--against-label", default=None, help="its name in the table")
    p.add_argument("--runtime", choices=("torch", "edge"), default="torch")
    p.add_argument("--tiles", type=int, nargs="+",
                   help="measure these tile sizes (latent positions) against the default's")
    p.add_argument("--domain", help="encode with this domain: 'auto', the gate over the "
                                    "model's shipped adapters (default: the model alone)")
    args = p.parse_args()
    if args.tiles and args.against:
        p.error("--tiles and --against measure different things: give one")
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    coder = args.model
    if args.runtime == "edge":
        from slimcodec_edge.onnx_export import export_bundle

        from slimcodec.zoo import load_model

        bundle = work / f"bundle-{args.model}"
        shutil.rmtree(bundle, ignore_errors=True)  # never a stale export
        export_bundle(load_model(args.model), bundle, args.model)
        coder = f"edge:{bundle}"
    if args.domain:
        coder += f"@{args.domain}"
    if args.tiles:
        tile_sizes(args, coder, work)
        return
    label = args.against_label or (args.against.name if args.against else None)
    columns = list(COLUMNS)
    if args.against:
        columns[4:4] = [f"tiled encode MiB ({label})", f"tiled decode MiB ({label})"]
        columns[9:9] = [f"encode s ({label})", f"decode s ({label})"]
    same = []
    rows = []
    for mp in args.sizes:
        rgb, src = saved_image(mp, work)
        h, w = rgb.shape[:2]
        result = {}
        for how, tile in [("tiled", "32"), ("whole", "100000")]:
            if how == "whole" and mp > args.whole_up_to:
                continue
            slc, out = work / f"{mp}-{how}.slc", work / f"{mp}-{how}.npy"
            enc, dec = code(src, slc, out, args.width, tile, coder)
            decoded = np.load(out)
            result[how] = (enc, dec, psnr(rgb, decoded), decoded,
                           8 * slc.stat().st_size / (h * w))
            print(how, mp, enc, dec, flush=True)
        t_enc, t_dec, t_psnr, _t_img, bpp = result["tiled"]
        row = f"| {h * w / 1e6:.1f} ({w}x{h}) | {bpp:.3f} | {mib(t_enc):.0f} | {mib(t_dec):.0f} | "
        if args.against:
            slc, out = work / f"{mp}-against.slc", work / f"{mp}-against.npy"
            a_enc, a_dec = code(src, slc, out, args.width, "32", coder, cwd=args.against)
            apart = np.abs(np.load(out).astype(int) - result["tiled"][3].astype(int))
            same.append((slc.read_bytes() == (work / f"{mp}-tiled.slc").read_bytes(),
                         int(apart.max())))
            print(label, mp, a_enc, a_dec, flush=True)
            row += f"{mib(a_enc):.0f} | {mib(a_dec):.0f} | "
        row += (f"{1024 * 1024 * mib(t_dec) / (h * w):.1f} | {t_enc['seconds']:.1f} | "
               f"{t_dec['seconds']:.1f} | ")
        if args.against:
            row += f"{a_enc['seconds']:.1f} | {a_dec['seconds']:.1f} | "
        if "whole" in result:
            w_enc, w_dec, w_psnr, _w_img, _ = result["whole"]
            row += (f"{mib(w_enc):.0f} | {mib(w_dec):.0f} | {t_psnr:.3f} | {w_psnr:.3f} | "
                    f"{t_psnr - w_psnr:+.4f} |")
        else:
            row += "not run | not run | " + f"{t_psnr:.3f} | n/a | n/a |"
        rows.append(row)
        for f in work.glob(f"{mp}*"):
            f.unlink()
    against_note = "" if not args.against else f"""
The ({label}) columns: the same images coded tiled by the checkout `{args.against}`, in the
same run; its files are {"the same" if all(f for f, _ in same) else "**not** the same"}
as this checkout's, byte for byte, and its decoded images {
"the same" if not any(d for _, d in same) else
f"at most {max(d for _, d in same)} level(s) apart"}.
"""
    runtime = "" if args.runtime == "torch" else ", the edge runtime"
    runtime += f", encoding through `--domain {args.domain}`" if args.domain else ""
    body = f"""## Memory: tiled coding of large images (`{args.model}`{runtime}, width {args.width})

Peak RSS of a child process above its peak with the model loaded (`VmHWM`, MiB; {
"`slimcodec.codec.Codec`" if args.runtime == "torch" else
"`slimcodec_edge.EdgeCodec` on a bundle exported once, all threads"}), for
encoding and decoding photo-like images (the bundled sample, mirrored to size). "Whole" is
the transforms run on the whole image at once, as before tiling; it is not run above
{args.whole_up_to:g} MP. Each way encodes and decodes its own file; ΔPSNR is tiled minus
whole, each against the source.

{table_head(columns)}
{chr(10).join(rows)}
{against_note}
What still grows with the image under tiling is what must exist whole: the decoded image
(3 bytes a pixel) or, when encoding, the source, and the latent, 4 bytes a value (C/64
bytes a pixel at width C): when encoding, its float values and their integer symbols; when
decoding, its symbols, which become the values in their own memory. A hyperprior model's
entropy coder also reads the scale indexes whole, 1 byte a value; its means, its hyper
transforms and the context run on bands of rows, so their working set follows the image's
width. The transforms' working set is that of one 512x512 tile plus halo. At 1 MP the figures are
small enough that the allocator's and the thread pools' own growth, which moves them by tens
of MiB from run to run, is most of them. The CLI refuses images over `--max-pixels`
(default 67,108,864) before allocating them."""
    write_section(f"memory-{args.model}" + ("-edge" if args.runtime == "edge" else "")
                  + (f"-{args.domain}" if args.domain else ""), body)


def tile_sizes(args: argparse.Namespace, coder: str, work: Path) -> None:
    """The ``--tiles`` table: each tile size against the default's, image by image."""
    from slimcodec.tiling import DEFAULT_TILE, processed_pixels

    tiles = sorted({*args.tiles, DEFAULT_TILE})
    columns = ["MP (size)", "tile (pixels)", "pixels run / image", "encode MiB", "decode MiB",
               "encode s", "decode s", "encode time / default's", "decode time / default's",
               "PSNR", "file as the default's", "largest pixel change, default's file"]
    rows = []
    for mp in args.sizes:
        rgb, src = saved_image(mp, work)
        h, w = rgb.shape[:2]
        measured = {}
        for tile in tiles:
            slc, out = work / f"{mp}-{tile}.slc", work / f"{mp}-{tile}.npy"
            measured[tile] = code(src, slc, out, args.width, str(tile), coder)
            print(tile, mp, *measured[tile], flush=True)
        default_slc = work / f"{mp}-{DEFAULT_TILE}.slc"
        default_out = np.load(work / f"{mp}-{DEFAULT_TILE}.npy")
        d_enc, d_dec = measured[DEFAULT_TILE]
        for tile in tiles:
            enc, dec = measured[tile]
            ratio = processed_pixels(h, w, tile=tile) / (h * w)
            same_file = (work / f"{mp}-{tile}.slc").read_bytes() == default_slc.read_bytes()
            cross = work / f"{mp}-{tile}-default.npy"  # the default tile's file, decoded here
            child("decode", str(src), str(default_slc), str(cross), str(args.width),
                  str(tile), coder)
            change = int(np.abs(np.load(cross).astype(int) - default_out.astype(int)).max())
            rows.append(
                f"| {h * w / 1e6:.1f} ({w}x{h}) | {tile} ({16 * tile}) | {ratio:.2f} | "
                f"{mib(enc):.0f} | {mib(dec):.0f} | {enc['seconds']:.1f} | "
                f"{dec['seconds']:.1f} | {enc['seconds'] / d_enc['seconds']:.2f}x | "
                f"{dec['seconds'] / d_dec['seconds']:.2f}x | "
                f"{psnr(rgb, np.load(work / f'{mp}-{tile}.npy')):.3f} | "
                f"{'same' if same_file else 'differs'} | {change} |")
        for f in work.glob(f"{mp}*"):
            f.unlink()
    runtime = "" if args.runtime == "torch" else ", the edge runtime"
    title = f"`{args.model}`{runtime}, width {args.width}"
    body = f"""## Memory and time against the tile size ({title})

Each image (the bundled sample, mirrored to size) coded with the transforms in tiles of N
latent positions (`--tile N`; each runs with a halo of 3 positions, 48 pixels, on every
side), in fresh child processes: peak RSS above the process's peak with the model loaded
(`VmHWM`, MiB; {"`slimcodec.codec.Codec`" if args.runtime == "torch" else
"`slimcodec_edge.EdgeCodec` on a bundle exported once, all threads"}), seconds, and
times as a multiple of the default tile's ({DEFAULT_TILE}) in the same run. "Pixels run /
image": the pixels the transforms run on, halos included, over the image's. "File as the
default's": whether the encoder wrote the same bytes; "largest pixel change": the default
tile's file decoded with this tile against its decode with the default tile (0: the same
image).

{table_head(columns)}
{chr(10).join(rows)}"""
    write_section(f"memory-tiles-{args.model}" + ("-edge" if args.runtime == "edge" else ""),
                  body)


if __name__ == "__main__":
    main()
