"""int8 bundles (`slimcodec export --int8`) against float ones, on images they were not
calibrated on: rate, PSNR, decode time and graph size per width.

The export calibrates on the first `--calibration-images` of `--calibration` and reports the
RD cost on tiles of the folder's next images (``quantize.rd_cost``); this measures it the
same way on other photos, coded whole by the edge runtime with the float graphs and with
the int8 graphs of one bundle (a variable-rate model
at the middle and at the top of each width's λ range, ``--at``: the top is where the latent
is largest). Decode times: onnxruntime on one thread, the two kinds' runs interleaved, as a
ratio, at the first point.

    python benchmarks/int8.py [--models slimcae-hp] [--images ../shared/data/photos] \\
        [--at middle top] [--activations8] [--means qdq float]

``--means``: also the widest width with a hyperprior's ``h_μ`` quantised as the transforms
are, its activations too (``qdq``, as 0.5.0 exported it), or left float, against the int8
weights and float activations bundles get.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from common import load_test_images, parse_crop, table_head, write_section
from onnxruntime.quantization import QuantType
from slimcodec_edge import quantize
from slimcodec_edge.edge import EdgeCodec
from slimcodec_edge.onnx_export import export_bundle

from slimcodec.zoo import load_model


def decode_ratio(float_codec: EdgeCodec, int8_codec: EdgeCodec, data: bytes, repeats: int
                 ) -> float:
    """Median int8 decode time over the float one, the runs interleaved."""
    times: dict[int, list[float]] = {0: [], 1: []}
    for codec in (float_codec, int8_codec):
        codec.decode_rgb(data)  # warm-up
    for _ in range(repeats):
        for i, codec in enumerate((float_codec, int8_codec)):
            t0 = time.perf_counter()
            codec.decode_rgb(data)
            times[i].append(time.perf_counter() - t0)
    return statistics.median(times[1]) / statistics.median(times[0])


#: The ``--means`` variants: a label, and the quantisation settings that export them.
MEANS = {"qdq": ("h_μ's activations quantised too (0.5.0)", {"WEIGHTS_ONLY": ()}),
         "float": ("float h_μ", {"QUANTISED": tuple(k for k in quantize.QUANTISED
                                                    if k != "hyper_mean")})}

#: Where in a width's λ range to measure (a variable-rate model): its low end to its high.
POINTS = {"bottom": 0.0, "middle": 0.5, "top": 1.0}


def measure(root: Path, label: str, widths: list[int] | None,
            images: list[tuple[str, np.ndarray]], repeats: int, at: list[str]) -> list[str]:
    """One table row per width and point of the bundle ``root``: its float graphs against
    its int8 ones on ``images``."""
    floats = EdgeCodec(root, threads=1)
    ints = EdgeCodec(root, threads=1, int8=True)
    rows = []
    for width in widths or floats.widths:
        for n, point in enumerate(at if floats.bundle.variable_rate else ["—"]):
            rows.append(_row(root, label, floats, ints, width, point, images,
                             repeats if n == 0 else 0))
            print(rows[-1], flush=True)
    return rows


def _row(root: Path, label: str, floats: EdgeCodec, ints: EdgeCodec, width: int, point: str,
         images: list[tuple[str, np.ndarray]], repeats: int) -> str:
    """The table row of ``width`` at the λ ``point`` of its range (``—``: a single-rate
    model); decode time only with ``repeats``."""
    lmbda = None
    if point in POINTS:
        lo, hi = floats.bundle.lambda_range(width)
        lmbda = float(np.exp(np.log(lo) + POINTS[point] * (np.log(hi) - np.log(lo))))
    cost = quantize.rd_cost(floats, ints, [rgb for _, rgb in images], width, lmbda)
    bpp_f, psnr_f, bpp_q, psnr_q, psnr_x = (cost[k] for k in (
        "bpp_float", "psnr_float", "bpp_int8", "psnr_int8", "psnr_cross"))
    time_ratio = "—"
    if repeats:
        data = floats.encode_rgb(images[0][1], width, lmbda=lmbda)
        time_ratio = f"×{decode_ratio(floats, ints, data, repeats):.2f}"
    kinds = ("analysis", "synthesis", *floats.bundle.coder_graphs)
    graphs = floats.bundle.manifest["graphs"][str(width)]
    sizes = [sum((root / graphs[k]["file"]).stat().st_size for k in kinds),  # a float
             sum((root / graphs.get(f"{k}_int8", graphs[k])["file"]).stat().st_size  # graph
                 for k in kinds)]  # the int8 runtime runs where there is no int8 one
    lmbda_cell = "—" if lmbda is None else f"{point} ({lmbda:.3g})"
    return (f"| {label} | {width} | {lmbda_cell} | {bpp_f:.4f} | {psnr_f:.2f} | {bpp_q:.4f} | "
            f"{psnr_q:.2f} | {100 * (bpp_q / bpp_f - 1):+.2f}% | {psnr_q - psnr_f:+.2f} | "
            f"{psnr_x - psnr_f:+.2f} | {time_ratio} | {sizes[1] / sizes[0]:.0%} |")


@contextmanager
def quantised_as(**settings: Any) -> Iterator[None]:
    """:mod:`slimcodec_edge.quantize`'s module settings (``ACTIVATIONS``, ``QUANTISED``,
    ``WEIGHTS_ONLY``) changed inside the block, for an export that is not the default one."""
    saved = {k: getattr(quantize, k) for k in settings}
    for k, v in settings.items():
        setattr(quantize, k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(quantize, k, v)


def export_widest(model: Any, name: str, root: Path, args: argparse.Namespace) -> Path:
    """The int8 bundle of ``model``'s widest width alone, calibrated as the main one."""
    return export_bundle(model, root, name, widths=[model.widths[0]],
                         calibration=args.calibration,
                         calibration_images=args.calibration_images, shared_weights=False)


def kernels(path: Path) -> str:
    """What onnxruntime's CPU provider runs a graph's convolutions as, once it has optimised
    it: integer kernels (QLinearConv) or float ones (Conv, ConvTranspose)."""
    import collections

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(Path(tmp) / "optimised.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        ops = collections.Counter(n.op_type for n in onnx.load(
            options.optimized_model_filepath).graph.node)
    return ", ".join(f"{ops[k]} {k}" for k in ("QLinearConv", "Conv", "ConvTranspose")
                     if ops[k])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["slimcae-hp"])
    p.add_argument("--calibration", default="../shared/data/train_photos")
    p.add_argument("--calibration-images", type=int, default=8)
    p.add_argument("--images", default="../shared/data/photos")
    p.add_argument("--count", type=int, default=6, help="test images")
    p.add_argument("--crop", default="768x512")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--means", nargs="*", default=[], choices=list(MEANS),
                   help="also the widest width with a hyperprior's h_μ quantised with "
                        "its activations (qdq) or float")
    p.add_argument("--at", nargs="+", choices=list(POINTS), default=["middle", "top"],
                   help="where in each width's λ range (a variable-rate model)")
    p.add_argument("--activations8", action="store_true",
                   help="also the widest width with 8-bit activations (what they would buy "
                        "in time, and cost without quantisation-aware training)")
    args = p.parse_args()
    images = load_test_images(args.images, parse_crop(args.crop))[: args.count]
    rows: list[str] = []
    notes: list[str] = []
    from onnxruntime import __version__ as ort_version

    for name in args.models:
        with tempfile.TemporaryDirectory() as tmp:
            model = load_model(name)
            # Graphs that hold their own weights, so that their files' sizes compare (a lean
            # bundle's arithmetic is the same: onnxruntime folds its slices).
            root = export_bundle(model, Path(tmp) / "bundle", name,
                                 calibration=args.calibration,
                                 calibration_images=args.calibration_images,
                                 shared_weights=False)
            rows += measure(root, f"`{name}`", None, images, args.repeats, args.at)
            for means in args.means if "hyper_mean" in model.coder_networks() else []:
                label, settings = MEANS[means]
                with quantised_as(**settings):
                    root_means = export_widest(model, name, Path(tmp) / means, args)
                rows += measure(root_means, f"`{name}`, {label}", [model.widths[0]], images,
                                args.repeats, args.at)
            if args.activations8:  # what 8-bit activations would buy, at the widest width
                with quantised_as(ACTIVATIONS=QuantType.QUInt8):
                    root8 = export_widest(model, name, Path(tmp) / "bundle8", args)
                rows += measure(root8, f"`{name}`, 8-bit activations", [model.widths[0]],
                                images, args.repeats, args.at[:1])
                entry = json.loads((root8 / "manifest.json").read_text())["graphs"][
                    str(model.widths[0])]
                ran = {k: kernels(root8 / entry[f"{k}_int8"]["file"])
                       for k in ("analysis", "synthesis")}
                notes.append(f"`{name}` with 8-bit activations, width {model.widths[0]}, as "
                             f"onnxruntime {ort_version} runs it: analysis {ran['analysis']}; "
                             f"synthesis {ran['synthesis']}.")
    names = ", ".join(n for n, _ in images)
    body = f"""## int8 bundles against float, on images they were not calibrated on

Calibration: the first {args.calibration_images} images of `{args.calibration}` (the
export's default). Test: {len(images)} images of `{args.images}` ({names}), centre crop
{args.crop}, coded whole by the edge runtime (`slimcodec-edge`), with the float and with
the int8 graphs of the same bundle; a variable-rate model at the λ of the column, a point
of each width's λ range (`--at {' '.join(args.at)}`, the range's ends on a log scale).
"float file": a file the float graphs wrote, decoded with the int8 ones (a checkerboard
model's int8 context and h_μ's int8 weights compute the means slightly differently),
against the float decode. Decode time: onnxruntime,
one thread, median of {args.repeats} runs of each kind, interleaved, int8 over float, at
the first point. Graph size: the graphs the int8 runtime runs (transforms, and a
hyperprior's coder networks) over the float ones. "8-bit activations" (`--activations8`):
the widest width exported again with 8-bit activations instead of 16, the same
calibration, no quantisation-aware training: what they would buy in time, and what they
cost without it. `--means qdq float`: the widest width exported again with h_μ's
activations quantised too (16-bit on the calibration's ranges, as 0.5.0 exported it), or
with h_μ float; bundles get int8 weights and float activations.

{table_head(["model", "width", "λ", "float bpp", "float PSNR (dB)", "int8 bpp",
             "int8 PSNR (dB)",
             "Δ bpp", "Δ PSNR (dB)", "float file Δ PSNR (dB)", "decode time",
             "graph size"])}
{chr(10).join(rows)}
{"".join(chr(10) + "- " + n for n in notes)}"""
    write_section("int8-" + "-".join(args.models), body)
    print(body)


if __name__ == "__main__":
    main()
