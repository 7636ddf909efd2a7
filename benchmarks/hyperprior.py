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

    python benchmarks/hyperprior.py --model runs/hp/model.pt --crop 384x256
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from common import (
    classical_rd,
    fmt,
    load_test_images,
    parse_crop,
    table_head,
    write_section,
)

from slimcodec.api import codec_for
from slimcodec.evaluate import evaluate
from slimcodec.latent import HyperpriorCoder, _pad
from slimcodec.models.hyperprior import SCALE_TABLE
from slimcodec.tiling import padded_region
from slimcodec.utils.rd import bd_rate, psnr_at_rate, rd_hull

RATES = (0.1, 0.15, 0.25, 0.4, 0.6, 1.0, 1.5)


def envelope(points: list[dict]) -> list[tuple[float, float]]:
    return rd_hull([(p["bpp"], p["psnr"]) for p in points])


def latents(codec, rgb: np.ndarray, width: int, lmbda: float):
    """The coder and the unrounded latent of ``rgb`` at ``width`` and ``lmbda``."""
    h, w = (-(-s // 16) * 16 for s in rgb.shape[:2])
    x = padded_region(rgb, (0, h), (0, w))
    with codec.operating_point(width, lmbda) as model:
        coder = model.latent_coder()
        y = model.analysis(torch.from_numpy(x)).numpy()[0]
        return coder, y


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

    result = evaluate(codec, rgbs, progress=True)
    ref = evaluate(reference, rgbs, progress=True)
    env, ref_env = envelope(result["points"]), envelope(ref["points"])
    classical = {name: classical_rd(images, name) for name in ("JPEG 4:2:0", "WebP", "AVIF")}

    # Determinism and the integer path's cost, at each width's middle λ.
    samples, float_differ, float_total, bytes_int, bytes_float = {}, 0, 0, 0, 0
    for i, rgb in enumerate(rgbs):
        for width in codec.widths:
            coder, y = latents(codec, rgb, width, codec.default_lambda(width))
            zs = z_symbols(coder, y)
            samples[f"z/{width}/{i}"] = zs
            with codec.operating_point(width, codec.default_lambda(width)) as model:
                one, two = float_indexes(model, zs, 1), float_indexes(model, zs, 2)

                class FloatScales:
                    def indexes(self, _symbols, model=model):
                        return float_indexes(model, _symbols, 1)

                float_coder = HyperpriorCoder(coder.z_medians, coder.z_tables, FloatScales(),
                                              coder.y_tables, coder.hyper_analysis,
                                              coder.hyper_mean)
                bytes_int += len(coder.encode(y)[1])
                bytes_float += len(float_coder.encode(y)[1])
            float_differ += int(np.sum(one != two))
            float_total += one.size
    integer_mismatch = thread_mismatch(codec, samples)

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
        new, old = psnr_at_rate(env, rate), psnr_at_rate(ref_env, rate)
        gaps.append(f"{rate:g}: " + fmt(None if new is None or old is None else new - old,
                                        "+.2f"))
    against = []
    for label, curve in classical.items():
        hull = rd_hull(curve)
        against.append(f"{label} **{fmt(bd_rate(hull, env), '+.1f', '%')}** "
                       f"(`{args.reference}`: {fmt(bd_rate(hull, ref_env), '+.1f', '%')})")
    body = f"""### `{name}`: the mean-scale hyperprior against `{args.reference}`

{len(images)} held-out photos ({', '.join(n for n, _ in images)}), centre crop {args.crop};
each width at the 5 λ of `slimcodec eval`; bpp from the real files.

{chr(10).join(rows)}

- Envelope BD-rate against `{args.reference}`: **{fmt(bd_rate(ref_env, env), '+.1f', '%')}**;
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
"""
    write_section(f"hyperprior-{name}", body)
    print(body)
    print(json.dumps({"bd_vs_reference": bd_rate(ref_env, env)}))


if __name__ == "__main__":
    main()
