"""The hyperprior model kind against its factorized source, and its deterministic scale path.

Three measurements, one run, written to RESULTS.md section ``hyperprior-MODEL``:

1. **RD.** The hyperprior model and the factorized reference (default ``slimcae-vr5``, the
   model it was initialised from), each width at the 5 λ ``slimcodec eval`` uses, on held-out
   photos, with JPEG 4:2:0, WebP and AVIF on the same images: envelope BD-rate and ΔPSNR at
   equal rate. bpp from the real container bytes (both strings and the header).
2. **Determinism.** Over every image and width, the fraction of latent elements whose scale
   index differs (a) between the integer path in a child process with one BLAS thread and
   one with two, and (b) for comparison, between *float* scales (the float ``h_σ`` in
   PyTorch, nearest table scale) computed with one and with two intra-op threads.
3. **What the integer path costs.** The same latents and means coded with the float
   network's indexes instead: the bytes of ``ŷ``'s string with each (distortion is the same
   by construction: only the coding tables differ), as a rate change.
4. **The edge runtime.** Both models exported; every image at every width (middle λ) coded
   by slimcodec and decoded by the edge runtime and the reverse: scale indexes compared
   element by element between the runtimes, pixels within one level; and the widest
   width's edge decode time of each model, alternating, one image after the other, as a
   ratio (hyperprior / reference, medians).

    python benchmarks/hyperprior.py --model runs/hp/model.pt --crop 384x256
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from common import (
    COMPARED,
    classical_rd,
    fmt,
    load_test_images,
    parse_crop,
    table_head,
    write_section,
)

from slimcodec.api import codec_for
from slimcodec.bitstream import unpack
from slimcodec.evaluate import evaluate
from slimcodec.latent import HyperpriorCoder, _pad
from slimcodec.models.hyperprior import SCALE_TABLE
from slimcodec.tiling import padded_region
from slimcodec.utils.rd import bd_rate, psnr_at_rate, rd_hull

RATES = (0.1, 0.15, 0.25, 0.4, 0.6, 1.0, 1.5)


def _safe(fn, *args):
    """``fn(*args)``, None for a curve too short to measure (a degenerate envelope)."""
    try:
        return fn(*args)
    except ValueError:
        return None


def envelope(points: list[dict]) -> list[tuple[float, float]]:
    return rd_hull([(p["bpp"], p["psnr"]) for p in points])


def latent(model, rgb: np.ndarray) -> np.ndarray:
    """The unrounded latent of ``rgb`` at the model's operating point (whole image)."""
    h, w = (-(-s // 16) * 16 for s in rgb.shape[:2])
    x = padded_region(rgb, (0, h), (0, w))
    return model.analysis(torch.from_numpy(x)).numpy()[0]


def z_symbols(coder: HyperpriorCoder, y: np.ndarray) -> np.ndarray:
    zh, zw = coder.z_size(y.shape[1:])
    return coder._z().quantize(coder.hyper_analysis(_pad(y, (4 * zh, 4 * zw))))


def float_indexes(model, symbols: np.ndarray, threads: int) -> np.ndarray:
    """The float network's nearest table index, at ``threads`` intra-op threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            log_sigma = model.h_scale(torch.from_numpy(symbols[None].astype(np.float32)))[0]
    finally:
        torch.set_num_threads(previous)
    logs = np.log(SCALE_TABLE)
    position = (log_sigma.double().numpy() - logs[0]) / (logs[1] - logs[0])
    return np.clip(np.floor(position + 0.5), 0, len(logs) - 1).astype(np.int32)


_CHILD = """
import sys, numpy as np
from slimcodec.integer_scales import IntegerScaleNet
arrays = np.load(sys.argv[1])
out = {}
for key in arrays.files:
    if key.startswith("z/"):
        width = key.split("/")[1]
        net = IntegerScaleNet.from_arrays(dict(np.load(sys.argv[2])), f"{width}/")
        out[key] = net.indexes(arrays[key])
np.savez(sys.argv[3], **out)
"""


def thread_mismatch(codec, samples: dict[str, np.ndarray]) -> float:
    """Fraction of indexes that differ between the integer path at 1 and 2 BLAS threads."""
    nets = {}
    for width in codec.widths:
        with codec.operating_point(width, None if not codec.variable_rate else
                                   codec.default_lambda(width)) as model:
            nets.update(model.scale_net().arrays(f"{width}/"))
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "z.npz", **samples)
        np.savez(Path(tmp) / "nets.npz", **nets)
        results = []
        for threads in ("1", "2"):
            env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
                   "MKL_NUM_THREADS": threads}
            out = Path(tmp) / f"idx{threads}.npz"
            subprocess.run([sys.executable, "-c", _CHILD, str(Path(tmp) / "z.npz"),
                            str(Path(tmp) / "nets.npz"), str(out)], env=env, check=True)
            results.append(dict(np.load(out)))
    differ = sum(int(np.sum(results[0][k] != results[1][k])) for k in samples)
    return differ / sum(results[0][k].size for k in samples)


def edge_section(codec, reference, rgbs) -> dict:
    """Cross-runtime parity of the hyperprior model, and both models' edge decode times."""
    import time

    from slimcodec_edge.edge import EdgeCodec
    from slimcodec_edge.onnx_export import export_bundle

    with tempfile.TemporaryDirectory() as tmp:
        edges = {}
        for label, c in (("hp", codec), ("ref", reference)):
            export_bundle(c.model, Path(tmp) / label, label)
            edges[label] = EdgeCodec(Path(tmp) / label)
        edge = edges["hp"]
        differ = total = within = values = max_diff = 0
        for rgb in rgbs:
            for width in codec.widths:
                lmbda = codec.default_lambda(width)
                for writer, reader in ((codec, edge), (edge, codec)):
                    data = writer.encode_rgb(rgb, width, lmbda=lmbda)
                    a, _ = writer.decode_rgb(data)
                    b, _ = reader.decode_rgb(data)
                    diff = np.abs(a.astype(int) - b.astype(int))
                    within += int((diff <= 1).sum())
                    values += diff.size
                    max_diff = max(max_diff, int(diff.max()))
                    strings = unpack(data).strings
                    size = tuple(-(-s // 16) for s in rgb.shape[:2])
                    ours = edge.coder(width, lmbda)
                    zs = ours._z().decode_symbols(strings[:1], ours.z_size(size))
                    i_edge, _ = ours._conditionals(zs, size)
                    with codec.operating_point(width, lmbda) as model:
                        i_torch, _ = model.latent_coder()._conditionals(zs, size)
                    differ += int((i_edge != i_torch).sum())
                    total += i_edge.size
        times: dict[str, list[float]] = {"hp": [], "ref": []}
        width = codec.widths[0]
        for rgb in rgbs:
            files = {label: c.encode_rgb(rgb, width) for label, c in
                     (("hp", codec), ("ref", reference))}
            for label in ("hp", "ref", "hp", "ref"):  # alternating, a warm-up pair first
                t0 = time.perf_counter()
                edges[label].decode_rgb(files[label])
                times[label].append(time.perf_counter() - t0)
        ms = {k: 1000 * float(np.median(v[1::2] if len(v) > 1 else v)) for k, v in
              times.items()}
    return {"index_differ": differ, "indexes": total, "within_one": within / values,
            "max_diff": max_diff, "ms_hp": ms["hp"], "ms_ref": ms["ref"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="the hyperprior model (name or file)")
    p.add_argument("--reference", default="slimcae-vr5")
    p.add_argument("--images", default="../shared/data/photos")
    p.add_argument("--crop", default="768x512")
    p.add_argument("--name", help="RESULTS.md section suffix (default: the model's name)")
    args = p.parse_args()
    images = load_test_images(args.images, parse_crop(args.crop))
    rgbs = [rgb for _, rgb in images]
    codec, reference = codec_for(args.model), codec_for(args.reference)

    # scale 1: each model at the image's own size, so that the entropy model is what differs
    result = evaluate(codec, rgbs, progress=True, scale=1)
    ref = evaluate(reference, rgbs, progress=True, scale=1)
    env, ref_env = envelope(result["points"]), envelope(ref["points"])
    classical = {name: classical_rd(images, name) for name in COMPARED}

    # Determinism and the integer path's cost, at each width's middle λ.
    samples, float_differ, float_total, bytes_int, bytes_float = {}, 0, 0, 0, 0
    for i, rgb in enumerate(rgbs):
        for width in codec.widths:
            # a coder runs the model's networks: only inside its operating point
            with codec.operating_point(width, codec.default_lambda(width)) as model:
                coder = model.latent_coder()
                y = latent(model, rgb)
                zs = z_symbols(coder, y)
                samples[f"z/{width}/{i}"] = zs
                one, two = float_indexes(model, zs, 1), float_indexes(model, zs, 2)

                class FloatScales:
                    def indexes(self, _symbols, model=model):
                        return float_indexes(model, _symbols, 1)

                # the same coder (and kind: a context model keeps its context) but scales
                float_coder = replace(coder, scale_net=FloatScales())
                bytes_int += len(coder.encode(y)[1])
                bytes_float += len(float_coder.encode(y)[1])
            float_differ += int(np.sum(one != two))
            float_total += one.size
    integer_mismatch = thread_mismatch(codec, samples)
    edge = edge_section(codec, reference, rgbs)

    name = args.name or Path(str(args.model)).stem
    bpps = [p["bpp"] for p in result["points"]]
    psnrs = [p["psnr"] for p in result["points"]]
    rows = [table_head(["width", "λ", "bpp", "PSNR (dB)", f"{args.reference} bpp",
                        f"{args.reference} PSNR"])]
    for a, b in zip(result["points"], ref["points"], strict=True):
        rows.append(f"| {a['width']} | {a['lmbda']:.5f} | {a['bpp']:.4f} | {a['psnr']:.2f} | "
                    f"{b['bpp']:.4f} | {b['psnr']:.2f} |")
    gaps = []
    for rate in RATES:
        new, old = _safe(psnr_at_rate, env, rate), _safe(psnr_at_rate, ref_env, rate)
        gaps.append(f"{rate:g}: " + fmt(None if new is None or old is None else new - old,
                                        "+.2f"))
    against = []
    for label, curve in classical.items():
        hull = rd_hull(curve)
        against.append(f"{label} **{fmt(_safe(bd_rate, hull, env), '+.1f', '%')}** "
                       f"(`{args.reference}`: {fmt(_safe(bd_rate, hull, ref_env), '+.1f', '%')})")
    body = f"""### `{name}`: the mean-scale hyperprior against `{args.reference}`

{len(images)} held-out photos ({', '.join(n for n, _ in images)}), centre crop {args.crop};
each width at the 5 λ of `slimcodec eval`; bpp from the real files.

{chr(10).join(rows)}

- Envelope BD-rate against `{args.reference}`: **{fmt(_safe(bd_rate, ref_env, env), '+.1f', '%')}**;
  ΔPSNR at equal rate (bpp: dB) {', '.join(gaps)}.
- Envelope BD-rate against {'; '.join(against)}.
- Range: {min(bpps):.3f}–{max(bpps):.3f} bpp, top PSNR {max(psnrs):.2f} dB.
- Scale indexes, every image and width at its middle λ ({float_total:,} latent elements):
  integer path at 1 vs 2 BLAS threads (separate processes): **{100 * integer_mismatch:.4f}%**
  differ; float `h_σ` in PyTorch at 1 vs 2 threads: {100 * float_differ / float_total:.4f}%
  differ (each one a desynchronised decode, were float scales used).
- What the integer path costs: `ŷ`'s strings take {bytes_int:,} bytes with its indexes and
  {bytes_float:,} with the float network's ({100 * (bytes_int / bytes_float - 1):+.2f}%; same
  symbols, so same distortion).
- Edge runtime (onnxruntime, every image and width at its middle λ, both directions):
  scale indexes that differ between the runtimes: **{edge['index_differ']:,} of
  {edge['indexes']:,}**; pixel values within one level: **{100 * edge['within_one']:.4f}%**
  (max difference {edge['max_diff']}).
- Edge decode time at width {codec.widths[0]}, {len(rgbs)} images, alternating: median
  {edge['ms_hp']:.0f} ms against `{args.reference}`'s {edge['ms_ref']:.0f} ms, ratio
  **{edge['ms_hp'] / edge['ms_ref']:.2f}×** (onnxruntime's default threads).
"""
    write_section(f"hyperprior-{name}", body)
    print(body)
    print(json.dumps({"bd_vs_reference": _safe(bd_rate, ref_env, env)}))


if __name__ == "__main__":
    main()
