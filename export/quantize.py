"""int8 graphs for a bundle: onnxruntime static quantisation, and what it costs in RD.

Each width's analysis graph is calibrated on tiles of the calibration images, its synthesis
graph on the quantised latents of those tiles (what it decodes in use), and a hyperprior's
coder networks (``hyper_analysis``, a checkerboard model's ``mean_context``) on what the
latent coder feeds them while coding those latents, at three λ across the width's range for
a variable-rate model. The convolutions' weights are int8 per channel and their activations
16-bit (MinMax ranges), in QDQ form (``QuantizeLinear``/``DequantizeLinear`` around each
quantised op), which any onnxruntime build runs; ``h_μ``'s weights are int8 per channel
and its activations float (:data:`WEIGHTS_ONLY`). The GDNs stay in float, and so do the
convolutions at the pixels' side (the analysis's first, the synthesis's last and a domain
adapter's output filter after it): about 1% of the weights, and a large share of the
rounding error that reaches the pixels. Weights take a quarter of the float graph's bytes.

**Shared int8 weights.** Quantised on its own, a narrower width's weights get scales from
its own slice of each row, so its int8 tensors are not slices of the widest width's and a
lean bundle (:mod:`slimcodec_edge.shared_weights`) would store every width's. Each
narrower width's int8 weights are therefore replaced by the leading slice of the widest
width's, with the leading slice of its per-channel scales: the same weights rounded to the
widest row's grid (at most half a step of that grid off). The pool then stores them once.

**The means.** ``hyper_mean`` computes them in float from int8 weights
(:data:`WEIGHTS_ONLY` says why), and an int8 ``mean_context`` corrects them, each with a
small error. The means never reach the entropy coder's tables (the scales are the integer
network's, exact everywhere), so a file stays decodable by every decoder; a decoder whose
means differ from the encoder's shifts each reconstructed latent value by that difference.
The report records it: ``psnr_cross`` is a file written with float graphs decoded with
int8 ones.

The RD cost is measured, not assumed: images of the calibration folder beyond the
calibrated ones (as many again, where it has them; else the calibration images) are
encoded and decoded with the float graphs and with the int8 ones by the edge runtime, and
the manifest records the mean bpp and PSNR of both per width (a variable-rate width's at
the middle of its λ range, and under ``top`` at its top); with decoder adapters,
``mixture`` records what the int8 mixing graph costs a file that weighs them all.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from slimcodec.gating import gated_file

from .bundle import Bundle, file_digest

#: The graphs of a width that get int8 versions (the coder's networks where it has them).
QUANTISED = ("analysis", "synthesis", "hyper_analysis", "hyper_mean", "mean_context")

#: The graphs whose int8 versions quantise their weights alone, their activations float.
#: ``hyper_mean``'s means are absolute, as large as the latent, which a high λ makes large:
#: with activations quantised on the ranges the calibration tiles reached, the means of an
#: image that reaches beyond them were clipped, and a file a float encoder wrote decoded
#: around other means than it was coded around: 3.3 dB lower at the top of `slimcae-hpc`'s
#: widest width on six photos, 0.2 at the middle (`python benchmarks/int8.py --models
#: slimcae-hpc --means qdq`). Its weights' int8 rounding alone moves them far less.
WEIGHTS_ONLY = ("hyper_mean",)

__all__ = ["ACTIVATIONS", "QUANTISED", "WEIGHTS_ONLY", "describe_report", "quantize_bundle",
           "rd_cost"]

#: Activation type of the quantised convolutions. 8-bit activations cost too much without
#: quantisation-aware training (the latent has too many levels for 256; for `slimcae-hp`
#: at width 192, +15.9% bits and -1.3 dB: `benchmarks/int8.py --activations8`) and decode
#: no faster on onnxruntime's CPU provider, so activations are 16-bit, weights 8-bit.
ACTIVATIONS = QuantType.QUInt16


class _Reader(CalibrationDataReader):
    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)


#: The GDNs' scopes in traced node names: ``/g_a/g_a.1/...`` when the transform runs as one
#: Sequential, ``/g_a.1/...`` when its layers run one by one (a variable-rate model's
#: modulations, or a domain adapter's stages, sit between them).
_GDN_SCOPE = re.compile(r"^/(g_a/)?g_a\.[135]/|^/(g_s/)?g_s\.[024]/")
#: The synthesis's own layers (a domain adapter's stages are traced outside this scope).
_SYNTHESIS_SCOPE = re.compile(r"^/(g_s/)?g_s\.\d+/")


def _float_nodes(path: Path) -> list[str]:
    """The nodes left in float: the GDNs' own (their 1x1 convolution among them), and the
    convolutions at the pixels' side, the analysis's first and the synthesis's last with
    whatever follows it (a domain adapter's output filter): a small share of the weights,
    a large share of the rounding error that reaches the pixels."""
    import onnx

    nodes = onnx.load(str(path)).graph.node
    convs = [n.name for n in nodes if n.op_type in ("Conv", "ConvTranspose")
             and not _GDN_SCOPE.match(n.name)]
    edge: list[str] = []
    if path.name.startswith("analysis"):
        edge = convs[:1]
    elif path.name.startswith("synthesis") and convs:
        last = max((i for i, n in enumerate(convs) if _SYNTHESIS_SCOPE.match(n)),
                   default=len(convs) - 1)
        edge = convs[last:]
    return [n.name for n in nodes if _GDN_SCOPE.match(n.name)] + edge


def _tile_rgb(x: np.ndarray) -> np.ndarray:
    """A calibration tile (``(1, 3, H, W)`` float in [0, 1]) as the uint8 image it came from."""
    return np.ascontiguousarray((x[0].transpose(1, 2, 0) * 255).round().astype(np.uint8))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255**2 / max(mse, 1e-10))


def quantize_bundle(root: Path, manifest: dict[str, Any], calibration: str | os.PathLike,
                    images: int) -> dict[str, Any]:
    """Add int8 graphs to the bundle in ``root`` (the source's, and every built-in domain
    adapter's), recording them in ``manifest`` (which the caller writes); returns the
    manifest's ``int8`` report: per width, and per domain under ``domains``."""
    from .edge.runtime import EdgeCodec
    from .onnx_export import calibration_tiles

    found = list(calibration_tiles(calibration, 2 * images))
    tiles, held_out = found[:images], found[images:]
    if not tiles:
        raise ValueError(f"{calibration}: no readable calibration images")
    # What int8 costs is measured on images it was not calibrated on where the folder has
    # more (its activations' ranges are those the calibration reached: on the calibration
    # tiles an image beyond them never shows), else on the calibration tiles themselves.
    measured = [_tile_rgb(x) for x in held_out or tiles]
    bundle = Bundle(root, manifest)
    float_codec = EdgeCodec(bundle)
    report: dict[str, Any] = {"images": len(tiles), "calibration": str(calibration),
                              "measured_on": {"images": len(measured),
                                              "held_out": bool(held_out)},
                              "format": "QDQ: int8 weights per channel, 16-bit activations "
                                        "(h_μ's float), GDNs in float; narrower widths' "
                                        "weights are slices of the widest's",
                              # What the runtime tells an older bundle by (Bundle's
                              # clipping_int8_means).
                              "weights_only": list(WEIGHTS_ONLY),
                              "widths": {}}
    # The source's graphs, then each built-in domain's, calibrated on what they code in use.
    graph_sets = [(0, manifest["graphs"]),
                  *((d, e["graphs"]) for d, e in bundle.domains.items())]
    latents: dict[int, list[dict[str, np.ndarray]]] = {}  # the source's synthesis feeds
    for domain, graphs in graph_sets:
        for w in bundle.widths:
            fed = _quantize_width(root, bundle, float_codec, graphs[str(w)], w, domain, tiles)
            if not domain:
                latents[w] = fed
        _slice_widest(root, graphs, bundle.widths)
    if "mixture" in manifest:
        _quantize_mixture(root, manifest["mixture"], latents)
    int8_codec = EdgeCodec(bundle, int8=True)
    for domain, _ in graph_sets:
        name = bundle.domains[domain]["name"] if domain else None
        costs = {str(w): _at_points(bundle, w, lambda lmbda, w=w, name=name: rd_cost(
            float_codec, int8_codec, measured, w, lmbda, name)) for w in bundle.widths}
        if domain:
            report.setdefault("domains", {})[str(domain)] = {"widths": costs}
        else:
            report["widths"] = costs
    if "mixture" in manifest:
        report["mixture"] = {"widths": {str(w): _at_points(
            bundle, w, lambda lmbda, w=w: _mixture_cost(float_codec, int8_codec, bundle, w,
                                                        measured, lmbda))
            for w in bundle.widths}}
    return report


def _lambdas(bundle: Bundle, width: int) -> list[float | None]:
    """The λ to calibrate at: three across a variable-rate width's range, else none."""
    if not bundle.variable_rate:
        return [None]
    lo, hi = bundle.lambda_range(width)
    return [lo, float(np.sqrt(lo * hi)), hi]


def _quantize_width(root: Path, bundle: Bundle, float_codec: Any, entry: dict[str, Any],
                    width: int, domain: int, tiles: list[np.ndarray]
                    ) -> list[dict[str, np.ndarray]]:
    """int8 analysis and synthesis graphs of one width (of one domain), into ``entry``;
    returns the synthesis's calibration feeds."""
    kinds = ("analysis", "synthesis", *bundle.coder_graphs)
    feeds: dict[str, list[dict[str, np.ndarray]]] = {k: [] for k in kinds}
    for lmbda in _lambdas(bundle, width):
        extra = {} if lmbda is None else {"lmbda": np.array([lmbda], np.float32)}
        float_coder = float_codec.coder(width, lmbda, domain)
        # The same coder, the networks calibrated for int8 graphs recording their feeds.
        networks = {kind: _recording(getattr(float_coder, kind), feeds[kind])
                    if kind in QUANTISED and kind not in WEIGHTS_ONLY
                    else getattr(float_coder, kind)
                    for kind in bundle.coder_graphs}
        coder = bundle.coder(width, lmbda, domain, networks) if networks else float_coder
        analysis = float_codec.session(width, "analysis", domain)
        for x in tiles:
            y = analysis.run(None, {"image": x, **extra})[0]
            y_hat = coder.decode(coder.encode(y[0]), y.shape[2:])[None]
            feeds["analysis"].append({"image": x, **extra})
            feeds["synthesis"].append({"latent": y_hat, **extra})
    for kind in (k for k in kinds if k in QUANTISED):
        _quantize(root, entry, kind, feeds[kind])
    return feeds["synthesis"]


def _quantize_mixture(root: Path, mixture: dict[str, Any],
                      latents: dict[int, list[dict[str, np.ndarray]]]) -> None:
    """int8 mixing synthesis graphs (``--domain mix`` files), calibrated on the source's
    synthesis feeds with each member alone and all in equal parts: their decoder weights
    quantise to the source's int8 synthesis's (per-channel scales of the same weights), so
    that a lean bundle stores them once, and an int8-only bundle needs no float decoder."""
    members = len(mixture["domains"])
    weightings = [*np.eye(members, dtype=np.float32),
                  np.full(members, 1 / members, np.float32)]
    for w, fed in latents.items():
        _quantize(root, mixture["graphs"][str(w)], "synthesis",
                  [{**feed, "weights": weights} for feed in fed for weights in weightings])
    _slice_widest(root, mixture["graphs"], tuple(latents))


def _quantize(root: Path, entry: dict[str, Any], kind: str,
              feeds: list[dict[str, np.ndarray]]) -> None:
    """The int8 graph of ``entry``'s ``kind`` graph, calibrated on ``feeds`` (none for
    :data:`WEIGHTS_ONLY` ones), recorded in ``entry`` as ``{kind}_int8``."""
    source = root / entry[kind]["file"]
    target = source.with_name(source.name.replace(".onnx", ".int8.onnx"))
    if kind in WEIGHTS_ONLY:
        _quantize_weights(source, target)
    else:
        _quantize_static(source, target, feeds)
    entry[f"{kind}_int8"] = {"file": target.name, "sha256": file_digest(target)}


def _quantize_static(source: Path, target: Path, feeds: list[dict[str, np.ndarray]]) -> None:
    """``source`` in QDQ form: int8 weights per channel and 16-bit activations calibrated
    on ``feeds``, the nodes :func:`_float_nodes` names left in float."""
    # onnxruntime logs advice (pre-processing, an opset upgrade for 16-bit) at WARNING.
    logging.disable(logging.WARNING)
    try:
        quantize_static(str(source), str(target), _Reader(feeds),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=ACTIVATIONS, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv", "ConvTranspose"],
                        nodes_to_exclude=_float_nodes(source),
                        calibrate_method=CalibrationMethod.MinMax)
    finally:
        logging.disable(logging.NOTSET)


def _quantize_weights(source: Path, target: Path) -> None:
    """``source`` with every convolution's kernel int8, symmetric per output channel (the
    axis :func:`_int8_weights` and the shared pool read), dequantised by a
    ``DequantizeLinear`` in front of the convolution; activations stay float."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    dequantise = []
    for node in graph.node:
        if node.op_type not in ("Conv", "ConvTranspose") or node.input[1] not in inits:
            continue
        name = node.input[1]
        kernel = numpy_helper.to_array(inits[name])
        axis = 0 if node.op_type == "Conv" else 1  # the output channels' axis
        others = tuple(a for a in range(kernel.ndim) if a != axis)
        scale = np.abs(kernel).max(axis=others).astype(np.float32) / 127
        scale[scale == 0] = 1  # an all-zero kernel: any scale codes it
        shape = [-1 if a == axis else 1 for a in range(kernel.ndim)]
        q = np.clip(np.round(kernel / scale.reshape(shape)), -127, 127).astype(np.int8)
        graph.initializer.remove(inits[name])
        graph.initializer.extend([numpy_helper.from_array(q, f"{name}_quantized"),
                                  numpy_helper.from_array(scale, f"{name}_scale"),
                                  numpy_helper.from_array(np.zeros_like(q, shape=scale.shape),
                                                          f"{name}_zero_point")])
        dequantise.append(helper.make_node(
            "DequantizeLinear", [f"{name}_quantized", f"{name}_scale", f"{name}_zero_point"],
            [name], name=f"{name}_DequantizeLinear", axis=axis))
    for node in reversed(dequantise):  # before every node that reads them
        graph.node.insert(0, node)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(target))


def _recording(network: Any, into: list[dict[str, np.ndarray]]) -> Any:
    """``network``, appending each input it is given to ``into`` as a graph feed."""
    def run(a: np.ndarray) -> np.ndarray:
        into.append({"input": np.ascontiguousarray(a[None], np.float32)})
        return network(a)
    return run


def _int8_weights(model: Any) -> list[tuple[Any, Any, Any, int]]:
    """The int8 weight tensors of a QDQ graph in graph order: (weights, scales, zero points,
    channel axis) initialisers of each ``DequantizeLinear`` that reads int8 kernels."""
    from onnx import TensorProto

    inits = {i.name: i for i in model.graph.initializer}
    found = []
    for node in model.graph.node:
        q = inits.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if q is None or q.data_type != TensorProto.INT8 or len(q.dims) < 3:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        found.append((q, inits[node.input[1]], inits[node.input[2]], axis))
    return found


def _slice_widest(root: Path, graphs: dict[str, Any], widths: tuple[int, ...]) -> None:
    """Every narrower width's int8 weights (and their per-channel scales and zero points)
    replaced by leading slices of the widest width's; each graph's entry re-hashed."""
    import onnx
    from onnx import numpy_helper

    widest = str(max(widths))
    for kind in QUANTISED:
        if f"{kind}_int8" not in graphs[widest]:
            continue
        widest_graph = onnx.load(str(root / graphs[widest][f"{kind}_int8"]["file"]))
        ref = [(*(numpy_helper.to_array(t) for t in w[:3]), w[3])
               for w in _int8_weights(widest_graph)]
        for w in widths:
            entry = graphs[str(w)][f"{kind}_int8"]
            if str(w) == widest:
                continue
            path = root / entry["file"]
            model = onnx.load(str(path))
            mine = _int8_weights(model)
            if len(mine) != len(ref):
                raise ValueError(f"{path}: its int8 weights do not match width {widest}'s")
            for (q, scale, zero, axis), (rq, rscale, rzero, raxis) in zip(mine, ref,
                                                                          strict=True):
                shape = tuple(q.dims)
                if axis != raxis or len(shape) != rq.ndim or any(
                        a > b for a, b in zip(shape, rq.shape, strict=True)):
                    raise ValueError(f"{path}: {q.name} is no slice of width {widest}'s")
                channels = slice(0, shape[axis])
                for proto, value in ((q, rq[tuple(slice(0, n) for n in shape)]),
                                     (scale, rscale[channels]), (zero, rzero[channels])):
                    proto.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(value),
                                                           proto.name))
            onnx.save(model, str(path))
            entry["sha256"] = file_digest(path)


def _at_points(bundle: Bundle, width: int,
               cost: Callable[[float | None], dict[str, Any]]) -> dict[str, Any]:
    """A width's report: ``cost`` at the middle of a variable-rate width's λ range, and
    under ``top`` at its top, where the latent is largest and int8 errors grow with it (the
    middle alone once hid a 3 dB loss there)."""
    if not bundle.variable_rate:
        return cost(None)
    _, middle, top = _lambdas(bundle, width)  # the points it was calibrated at
    return {**cost(middle), "top": cost(top)}


def _mixture_cost(float_codec: Any, int8_codec: Any, bundle: Bundle, width: int,
                  images: list[np.ndarray], lmbda: float | None) -> dict[str, Any]:
    """Mean PSNR of the ``images``' source files weighed with every adapter of the
    mixture in equal parts, decoded through the float and the int8 mixing graphs: what the
    int8 one costs a mixed file (the weights are the encoder's choice, the graph the
    decoder's, so a file any encoder mixed decodes with either)."""
    members = bundle.mixture_domains
    weights = dict.fromkeys(members, np.floor(64 / len(members)) / 64)
    own = {d for d in members if bundle.domains[d].get("own_tables")}
    sums = np.zeros(2)
    for rgb in images:
        mixed = gated_file(float_codec.encode_rgb(rgb, width, lmbda=lmbda), 0, weights, own)
        sums += [_psnr(rgb, codec.decode_rgb(mixed)[0]) for codec in (float_codec, int8_codec)]
    psnr_f, psnr_q = sums / len(images)
    return {"lmbda": lmbda, "weights": float(weights[members[0]]), "psnr_float": psnr_f,
            "psnr_int8": psnr_q, "psnr_change": psnr_q - psnr_f}


def rd_cost(float_codec: Any, int8_codec: Any, images: list[np.ndarray], width: int,
            lmbda: float | None, domain: str | None = None) -> dict[str, Any]:
    """Mean bpp and PSNR of ``images`` (uint8 ``(H, W, 3)``) coded with a bundle's float
    and its int8 graphs (two :class:`~slimcodec_edge.edge.EdgeCodec`) at ``width`` and
    ``lmbda``, through the adapter ``domain`` (None: the model alone), and of each float
    file decoded with the int8 graphs (``psnr_cross``): the export's report, and
    ``benchmarks/int8.py``'s."""
    sums = np.zeros(5)
    for rgb in images:
        for i, codec in enumerate((float_codec, int8_codec)):
            data = codec.encode_rgb(rgb, width, lmbda=lmbda, domain=domain)
            sums[2 * i] += 8 * len(data) / rgb[..., 0].size
            sums[2 * i + 1] += _psnr(rgb, codec.decode_rgb(data)[0])
            if i == 0:  # a float encoder's file, decoded by the int8 graphs
                sums[4] += _psnr(rgb, int8_codec.decode_rgb(data)[0])
    bpp_f, psnr_f, bpp_q, psnr_q, psnr_cross = sums / len(images)
    return {"lmbda": lmbda, "bpp_float": bpp_f, "psnr_float": psnr_f, "bpp_int8": bpp_q,
            "psnr_int8": psnr_q, "bpp_change": bpp_q / bpp_f - 1, "psnr_change": psnr_q - psnr_f,
            "psnr_cross": psnr_cross}


def describe_report(manifest: dict[str, Any]) -> list[str]:
    """The manifest's int8 report in words, a line per width (of the source, of each
    domain, of the mixing graphs): what ``slimcodec export`` prints."""
    int8 = manifest.get("int8") or {}
    lines = []
    reports = [("", int8.get("widths", {}))] + [
        (f" domain {manifest['domains'][d]['name']!r}", entry["widths"])
        for d, entry in int8.get("domains", {}).items()]
    measured = int8.get("measured_on") or {"images": int8.get("images"), "held_out": False}
    on = (f"{measured['images']} {'held-out' if measured['held_out'] else 'calibration'} "
          "images")
    for where, widths in reports:
        for w, cost in widths.items():
            lines.append(f"int8{where} width {w} against float on {on}: " + "; ".join(
                             f"{at}{c['bpp_change']:+.2%} bpp, {c['psnr_change']:+.2f} dB, a "
                             f"float file decoded {c['psnr_cross'] - c['psnr_float']:+.2f} dB"
                             for at, c in _points(cost)))
    for w, cost in (int8.get("mixture") or {}).get("widths", {}).items():
        lines.append(f"int8 mixing graph width {w}, a float file weighing each adapter "
                     f"{cost['weights']:.2f}, decoded: " + "; ".join(
                         f"{at}{c['psnr_change']:+.2f} dB" for at, c in _points(cost)))
    return lines


def _points(cost: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A width's report as (label, cost) points: its own, and a variable-rate width's at
    the top of its λ range."""
    top = cost.get("top")
    return [("", cost)] + ([("at the top λ ", top)] if top else [])
