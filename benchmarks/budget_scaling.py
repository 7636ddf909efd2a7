"""Budgets at the image's size: how well a profile's latency, scaled to the image
(`slimcodec_edge.select`), predicts the latency at 0.25x, 1x and 4x the profiled size, and
whether the width chosen for a latency budget on an image 4x the profiled size runs within
1.2x that budget.

Measured side by side in one run, one onnxruntime thread, for every width of the model:

* the edge runtime's whole encode and decode (tiles, hyper networks, entropy coding), what
  a device spends and what `slimcodec profile` records for budgets (``latency_ms["edge"]``,
  at 1x and at half the pixels, with their fit: a fixed cost plus a cost per pixel the tiled
  transforms run on, `slimcodec.tiling.processed_pixels`); predicted at 0.25x and 4x as
  `select` does: the larger of the 1x time scaled by those pixels and the fit;
* for comparison, the analysis and synthesis graphs run on the whole image at once,
  predicted by the pixel ratio.

The error is measured / predicted - 1.

    python benchmarks/budget_scaling.py [--model slimcae-hp] [--size 768x512] [--repeats 5]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort
from common import table_head, write_section
from PIL import Image
from slimcodec_edge.edge import EdgeCodec
from slimcodec_edge.onnx_export import export_bundle
from slimcodec_edge.profile import latency_fit
from slimcodec_edge.select import SCALE_RANGE, select_width

from slimcodec.data import sample_image
from slimcodec.tiling import processed_pixels
from slimcodec.zoo import DEFAULT_MODEL, load_model

SCALES = (0.25, 0.5, 1.0, 4.0)  # 0.5: the second size a profile times, for its fit


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def image_at(size: tuple[int, int]) -> np.ndarray:
    """The bundled sample photo, resized to ``size`` (height, width)."""
    h, w = size
    return np.asarray(Image.open(sample_image()).convert("RGB").resize((w, h), Image.LANCZOS))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--size", default="768x512", help="the profiled size, WxH")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    w0, h0 = (int(v) for v in args.size.split("x"))
    sizes = {s: (int(h0 * math.sqrt(s)) // 16 * 16, int(w0 * math.sqrt(s)) // 16 * 16)
             for s in SCALES}
    sizes[0.5] = (round(h0 / 2**0.5 / 16) * 16, round(w0 / 2**0.5 / 16) * 16)  # as profile
    model = load_model(args.model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    with tempfile.TemporaryDirectory() as tmp:
        bundle = export_bundle(model, Path(tmp) / "bundle", args.model)
        edge = EdgeCodec(bundle, threads=1)
        graph: dict[tuple[int, float], dict[str, float]] = {}
        whole: dict[tuple[int, float], dict[str, float]] = {}
        for width in edge.widths:
            lo, hi = edge.lambda_range(width) if edge.variable_rate else (None, None)
            lmbda = math.sqrt(lo * hi) if lo else None
            extra = {"lmbda": np.array([lmbda], np.float32)} if lmbda else {}
            sessions = {kind: ort.InferenceSession(str(edge.bundle.graph(width, kind)), options,
                                                   providers=["CPUExecutionProvider"])
                        for kind in ("analysis", "synthesis")}
            for scale, (h, w) in sizes.items():
                rgb = image_at((h, w))
                x = (rgb.astype(np.float32) / 255).transpose(2, 0, 1)[None]
                repeats = max(2, args.repeats if scale <= 1 else args.repeats // 2)
                analysis = partial(sessions["analysis"].run, None, {"image": x, **extra})
                y = analysis()[0]
                synthesis = partial(sessions["synthesis"].run, None, {"latent": y, **extra})
                graph[width, scale] = {"encoder": median_ms(analysis, repeats),
                                       "decoder": median_ms(synthesis, repeats)}
                data = edge.encode_rgb(rgb, width, lmbda=lmbda)
                whole[width, scale] = {
                    "encoder": median_ms(partial(edge.encode_rgb, rgb, width, lmbda=lmbda),
                                         repeats),
                    "decoder": median_ms(partial(edge.decode_rgb, data), repeats)}
                print(width, scale, graph[width, scale], whole[width, scale], flush=True)

    work = {s: processed_pixels(*sizes[s]) / processed_pixels(*sizes[1.0]) for s in SCALES}
    # What `slimcodec profile` records: the edge times at 1x and at half the pixels, fitted.
    fits = {(w, part): latency_fit({sizes[s]: {"median": whole[w, s][part]}
                                    for s in (1.0, 0.5)}, sizes[1.0], sizes[0.5])
            for w in edge.widths for part in ("encoder", "decoder")}

    def predict(width: int, part: str, scale: float) -> float:
        fit = fits[width, part]
        return max(whole[width, 1.0][part] * work[scale], fit["fixed_ms"]
                   + fit["ms_per_mpixel"] * processed_pixels(*sizes[scale]) / 1e6)

    def error(table: dict, width: int, scale: float, part: str) -> float:
        if table is whole:  # as select predicts it
            predicted = predict(width, part, scale)
        else:
            predicted = table[width, 1.0][part] * scale
        return table[width, scale][part] / predicted - 1

    rows = []
    for width in edge.widths:
        for scale in (0.25, 4.0):
            rows.append(f"| {width} | {scale:g}x ({sizes[scale][1]}x{sizes[scale][0]}) | "
                        + " | ".join(f"{table[width, scale][part]:.1f} "
                                     f"({error(table, width, scale, part):+.1%})"
                                     for table in (graph, whole)
                                     for part in ("encoder", "decoder")) + " |")
    errors = {name: [abs(error(t, w, s, part)) for w in edge.widths for s in (0.25, 4.0)
                     for part in ("encoder", "decoder")]
              for name, t in (("graphs", graph), ("whole", whole))}
    # The budget check at 4x: a profile of the 1x edge times (as `slimcodec profile` records
    # them), a budget just above each width's scaled cost, the chosen width's measured 4x
    # time (encode or decode, the larger) against the budget.
    profile = {"size": [h0, w0], "widths": [
        {"width": w, **{part: {"macs": 0, "peak_memory_bytes": 0, "latency_ms": {
            "edge": {"threads_1": {"median": whole[w, 1.0][part]}, "fit": fits[w, part]}}}
            for part in ("encoder", "decoder")}} for w in edge.widths]}
    budgets = sorted(1.05 * max(predict(w, part, 4.0) for part in ("encoder", "decoder"))
                     for w in edge.widths)
    checks = []
    for budget in budgets:
        chosen = select_width(profile, max_latency_ms=budget, image_size=sizes[4.0]).width
        measured = max(whole[chosen, 4.0].values())
        checks.append(f"| {budget:.0f} | {chosen} | {measured:.0f} | {measured / budget:.2f} |")
    worst = max(float(c.split("|")[4]) for c in checks)
    body = f"""## Budgets at the image's size (`{args.model}`)

`python benchmarks/budget_scaling.py --model {args.model} --size {args.size} --repeats
{args.repeats}`: one onnxruntime thread, every width at its middle λ, the bundled sample
photo resized to each size. A profile measures one size ({w0}x{h0} here); `slimcodec select`,
`compress` and `slimcodec-edge encode` predict the edge runtime's time at another size as
the larger of its 1x time times the pixels the tiled transforms run on (×{work[0.25]:.3f}
at 0.25x, ×{work[4.0]:.3f} at 4x) and the fit of its times at 1x and at half the pixels
({sizes[0.5][1]}x{sizes[0.5][0]}), a fixed cost plus a cost per such pixel (images over
{SCALE_RANGE[1]:g}x the pixels are refused, those under {SCALE_RANGE[0]:g}x budgeted at
{SCALE_RANGE[0]:g}x). Milliseconds measured at
the size, and in brackets the error of the prediction (measured / predicted − 1; the
whole-image graphs, for comparison, by the 1x time times the pixel ratio):

{table_head(["width", "size", "analysis graph", "synthesis graph", "edge encode",
             "edge decode"])}
{chr(10).join(rows)}

- Largest error of the scaled prediction, the edge runtime's whole encode and decode (what
  budgets use): **{max(errors['whole']):.1%}**; the whole-image graphs:
  {max(errors['graphs']):.1%}.
- A latency budget on a {sizes[4.0][1]}x{sizes[4.0][0]} image (4x the profiled pixels), the
  width chosen from the scaled {w0}x{h0} profile, its measured edge encode or decode (the
  larger) against the budget; target <= 1.2:

{table_head(["budget (ms)", "width chosen", "measured (ms)", "measured / budget"])}
{chr(10).join(checks)}

- Worst ratio: **{worst:.2f}**."""
    write_section(f"budget-scaling-{args.model}", body)
    print(body)


if __name__ == "__main__":
    main()
