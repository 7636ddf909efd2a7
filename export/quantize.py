"""int8 graphs for a bundle: onnxruntime static quantisation, and what it costs in RD.

Each width's analysis graph is calibrated on tiles of the calibration images and its
synthesis graph on the quantised latents of those tiles (what it decodes in use), at three λ
across the width's range for a variable-rate model. The convolutions' weights are int8 per
channel and their activations 16-bit (MinMax ranges), in QDQ form
(``QuantizeLinear``/``DequantizeLinear`` around each quantised op), which any onnxruntime
build runs; the GDNs stay in float. Weights take a quarter of the float graph's bytes.

The RD cost is measured, not assumed: every calibration image is encoded and decoded with
the float graphs and with the int8 ones by the edge runtime, and the manifest records the
mean bpp and PSNR of both per width.
"""

from __future__ import annotations

import logging
import os
import re
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

from .bundle import Bundle, file_digest

__all__ = ["ACTIVATIONS", "quantize_bundle"]

#: Activation type of the quantised convolutions. 8-bit activations cost over +60% bpp and
#: 6 dB at width 96 in a first try (the latent itself has too many levels for 256), so
#: activations are 16-bit and weights 8-bit ("A16W8").
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


def _gdn_nodes(path: Path) -> list[str]:
    """The GDNs' own nodes (their 1x1 convolution among them): left in float."""
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node if _GDN_SCOPE.match(n.name)]


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

    tiles = list(calibration_tiles(calibration, images))
    if not tiles:
        raise ValueError(f"{calibration}: no readable calibration images")
    bundle = Bundle(root, manifest)
    float_codec = EdgeCodec(bundle)
    report: dict[str, Any] = {"images": len(tiles), "calibration": str(calibration),
                              "format": "QDQ: int8 weights per channel, 16-bit activations, "
                                        "GDNs in float",
                              "widths": {}}
    # The source's graphs, then each built-in domain's, calibrated on what they code in use.
    graph_sets = [(0, manifest["graphs"]),
                  *((d, e["graphs"]) for d, e in bundle.domains.items())]
    for domain, graphs in graph_sets:
        for w in bundle.widths:
            _quantize_width(root, bundle, float_codec, graphs[str(w)], w, domain, tiles)
    int8_codec = EdgeCodec(bundle, int8=True)
    for domain, _ in graph_sets:
        costs = {str(w): _rd_cost(float_codec, int8_codec, bundle, w, domain, tiles)
                 for w in bundle.widths}
        if domain:
            report.setdefault("domains", {})[str(domain)] = {"widths": costs}
        else:
            report["widths"] = costs
    return report


def _lambdas(bundle: Bundle, width: int) -> list[float | None]:
    """The λ to calibrate at: three across a variable-rate width's range, else none."""
    if not bundle.variable_rate:
        return [None]
    lo, hi = bundle.lambda_range(width)
    return [lo, float(np.sqrt(lo * hi)), hi]


def _quantize_width(root: Path, bundle: Bundle, float_codec: Any, entry: dict[str, Any],
                    width: int, domain: int, tiles: list[np.ndarray]) -> None:
    """int8 analysis and synthesis graphs of one width (of one domain), into ``entry``."""
    feeds_a, feeds_s = [], []
    for lmbda in _lambdas(bundle, width):
        extra = {} if lmbda is None else {"lmbda": np.array([lmbda], np.float32)}
        coder = float_codec.coder(width, lmbda, domain)
        analysis = float_codec.session(width, "analysis", domain)
        for x in tiles:
            y = analysis.run(None, {"image": x, **extra})[0]
            y_hat = coder.decode(coder.encode(y[0]), y.shape[2:])[None]
            feeds_a.append({"image": x, **extra})
            feeds_s.append({"latent": y_hat, **extra})
    for kind, feeds in (("analysis", feeds_a), ("synthesis", feeds_s)):
        source = root / entry[kind]["file"]
        target = source.with_name(source.name.replace(".onnx", ".int8.onnx"))
        # onnxruntime logs advice (pre-processing, an opset upgrade for 16-bit) at WARNING.
        logging.disable(logging.WARNING)
        try:
            quantize_static(str(source), str(target), _Reader(feeds),
                            quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=ACTIVATIONS, weight_type=QuantType.QInt8,
                            op_types_to_quantize=["Conv", "ConvTranspose"],
                            nodes_to_exclude=_gdn_nodes(source),
                            calibrate_method=CalibrationMethod.MinMax)
        finally:
            logging.disable(logging.NOTSET)
        entry[f"{kind}_int8"] = {"file": target.name, "sha256": file_digest(target)}


def _rd_cost(float_codec: Any, int8_codec: Any, bundle: Bundle, width: int, domain: int,
             tiles: list[np.ndarray]) -> dict[str, Any]:
    """Mean bpp and PSNR of the calibration tiles coded with float and with int8 graphs."""
    lmbda = None
    if bundle.variable_rate:
        lo, hi = bundle.lambda_range(width)
        lmbda = float(np.sqrt(lo * hi))
    name = bundle.domains[domain]["name"] if domain else None
    sums = np.zeros(4)
    for x in tiles:
        rgb = np.ascontiguousarray((x[0].transpose(1, 2, 0) * 255).round().astype(np.uint8))
        for i, codec in enumerate((float_codec, int8_codec)):
            data = codec.encode_rgb(rgb, width, lmbda=lmbda, domain=name)
            sums[2 * i] += 8 * len(data) / rgb[..., 0].size
            sums[2 * i + 1] += _psnr(rgb, codec.decode_rgb(data)[0])
    bpp_f, psnr_f, bpp_q, psnr_q = sums / len(tiles)
    return {"lmbda": lmbda, "bpp_float": bpp_f, "psnr_float": psnr_f, "bpp_int8": bpp_q,
            "psnr_int8": psnr_q, "bpp_change": bpp_q / bpp_f - 1, "psnr_change": psnr_q - psnr_f}
