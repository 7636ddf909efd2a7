"""``slimcodec profile``: per width, what the encoder and the decoder cost.

For each width, encoder (analysis transform) and decoder (synthesis transform) separately:

* **MACs** from fvcore, one multiply-add = one MAC. fvcore counts convolutions and linear
  layers; the handles below add what it skips, one MAC per output element of each
  elementwise op: GDN's square, square root and normalising multiply, the modulation's
  scaling and exponential, the latent gain. A latent coder's own networks (a hyperprior's
  ``h_a`` and ``h_μ`` in float, its ``h_σ`` in integer arithmetic) are counted on the side
  that runs them, and also reported alone (``coder_macs``). Entropy coding is not counted.
* **Parameters** the width uses, split into those shared with other widths (slices of the
  shared kernels, GDN parameters, modulation networks) and those private to it (its entropy
  model(s) and CDF tables, SlimGDN+'s per-width scalars, SwitchGDN's own GDNs); weight
  bytes at float32, and the width's ONNX graph size.
* **Peak memory**, measured: the peak resident set size (``VmHWM``) of a child process
  running one inference in onnxruntime at the profile size, minus its peak after loading
  the graph: activations and onnxruntime's arena, not the weights.
* **Latency**, median and p90 over ``repeats`` runs after one warm-up: of the transforms'
  graphs in onnxruntime and in PyTorch (eager, inference mode), at 1 thread and at all
  threads; and of the edge runtime's whole encode and decode (``"edge"``, 1 thread: tiles,
  hyper networks and entropy coding, what a device spends) of the bundled sample photo at
  the profile size and at half its pixels, with their fit (``"fit"``: a fixed cost and a
  cost per million pixels the tiled transforms run on), which budgets use
  (:mod:`slimcodec_edge.select`).

With ``eval_json`` (``slimcodec eval --json`` of the same model), each width carries its RD
points (bpp, PSNR, MS-SSIM, λ), and ``rd_source`` names the images they were measured on,
so rate, quality and cost stand in one table; :func:`plot_profile` draws them, for one
model or several side by side.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fvcore.nn import FlopCountAnalysis
from PIL import Image
from torch import nn

from slimcodec.codec import prepare_model
from slimcodec.data import sample_image
from slimcodec.layers import LambdaModulation, LatentGain, SlimGDNPlus, Slimmable, SwitchGDN
from slimcodec.models import ModulatedSlimCAE, SlimCAE
from slimcodec.tiling import DEFAULT_TILE, processed_pixels

from .bundle import Bundle
from .edge.runtime import EdgeCodec
from .onnx_export import export_bundle, graph_modules, traceable_adapter

__all__ = ["CONVENTION", "latency_fit", "plot_profile", "profile_model", "rd_span"]

CONVENTION = ("MACs: one multiply-add = 1 MAC (fvcore's count for convolutions and linear "
              "layers); elementwise ops (GDN's square, sqrt and multiply, modulation, gain, "
              "exp) count 1 MAC per output element. Entropy coding is not counted.")


def _elementwise(inputs: list[Any], outputs: list[Any]) -> int:
    """One MAC per output element."""
    shape = outputs[0].type().sizes()
    return int(np.prod(shape)) if shape else 1


_HANDLES = {op: _elementwise for op in (
    "aten::mul", "aten::mul_", "aten::div", "aten::div_", "aten::sqrt", "aten::rsqrt",
    "aten::exp", "aten::log", "aten::add", "aten::add_", "aten::sub", "aten::relu",
    "aten::clamp", "aten::max", "aten::maximum", "aten::pow")}


def count_macs(module: nn.Module, args: tuple[torch.Tensor, ...]) -> int:
    analysis = FlopCountAnalysis(module, args).set_op_handle(**_HANDLES)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return int(analysis.total())


def _coder_macs(model: SlimCAE, latent: torch.Tensor, part: str) -> int:
    """MACs of the latent coder's own networks on ``part``'s side (a hyperprior's h_a, h_μ
    and integer h_σ; none for a factorized model), for ``latent``."""
    side = model.coder_networks(part)
    x, total = latent, 0
    for name, module in model.coder_networks().items():
        if name in side:
            total += count_macs(module, (x,))
        x = module(x)
    return total + (model.coder_integer_macs(tuple(latent.shape[-2:])) if side else 0)


def _part_modules(model: SlimCAE, part: str) -> list[nn.Module]:
    """The modules the encoder (``analysis``) or the decoder (``synthesis``) runs."""
    transform = model.g_a if part == "encoder" else model.g_s
    roots: list[nn.Module] = [transform]
    if isinstance(model, ModulatedSlimCAE):
        roots.append(model.modulation_a if part == "encoder" else model.modulation_s)
        if model.latent_gain is not None:
            roots.append(model.latent_gain)
    return [m for root in roots for m in root.modules()]


def count_parameters(model: SlimCAE, width: int, part: str) -> dict[str, int]:
    """Parameters (and CDF table entries) the encoder or decoder uses at ``width``: shared
    with other widths, or its own. Both sides hold the width's entropy model(s)."""
    index = model.widths.index(width)
    shared = private = 0
    with model.using_width(width):
        for m in _part_modules(model, part):
            if isinstance(m, SwitchGDN):
                private += sum(p.numel() for p in m.gdns[index].parameters())
            elif isinstance(m, Slimmable) and hasattr(m, "weight"):  # convolutions
                cin, cout = m.in_channels, m.out_channels
                shared += cin * cout * m.weight[0, 0].numel()
                shared += cout if m.bias is not None else 0
            elif isinstance(m, SlimGDNPlus):
                shared += width + width * width
                private += 4
            elif isinstance(m, Slimmable) and hasattr(m, "beta"):  # SlimGDN
                shared += width + width * width
            elif isinstance(m, LambdaModulation):
                shared += m.hidden.weight.numel() + m.hidden.bias.numel()
                shared += width * (m.out.weight.shape[1] + 1)
            elif isinstance(m, LatentGain):
                shared += width
    anchors = model.rate_anchors if isinstance(model, ModulatedSlimCAE) else 1
    for eb in model.entropy_bottlenecks[index * anchors : (index + 1) * anchors]:
        private += sum(p.numel() for p in eb.parameters())
        private += sum(b.numel() for b in eb.buffers())
    return {"shared": shared, "private": private, "total": shared + private}


def _timings(repeats: int, fn, *args) -> dict[str, float]:
    """Median and p90 milliseconds of ``fn(*args)`` over ``repeats`` calls after a warm-up."""
    fn(*args)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        times.append(1000 * (time.perf_counter() - t0))
    times.sort()
    return {"median": statistics.median(times),
            "p90": times[min(len(times) - 1, round(0.9 * (len(times) - 1)))]}


_MEMORY_CHILD = r"""
import json, sys
import numpy as np
import onnxruntime as ort
def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
path, feeds = sys.argv[1], np.load(sys.argv[2])
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
inputs = {k: feeds[k] for k in feeds.files}
before = hwm()
session.run(None, inputs)
print(json.dumps({"peak_kib": hwm() - before}))
"""


def _peak_memory(graph: Path, feeds: dict[str, np.ndarray]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "feeds.npz", **feeds)
        proc = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(graph),
                               str(Path(tmp) / "feeds.npz")], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"memory probe failed: {proc.stderr[-500:]}")
    return 1024 * json.loads(proc.stdout.strip().splitlines()[-1])["peak_kib"]


def profile_model(
    model: SlimCAE,
    name: str,
    size: tuple[int, int] = (512, 768),
    widths: Sequence[int] | None = None,
    repeats: int = 10,
    eval_json: str | os.PathLike | None = None,
    bundle: str | os.PathLike | None = None,
    adapter: Any = None,
    tile: int = DEFAULT_TILE,
) -> dict[str, Any]:
    """The profile of every width of ``model`` at image ``size`` (height, width); with a
    domain ``adapter`` (:func:`slimcodec.adaptation.load_adapter`), of the adapted codec, as
    a device coding that domain runs it (its MACs, graphs, memory and latency; parameters
    stay the source's per width, and the adapter's own are reported once). The edge
    runtime's latency is timed with the transforms in tiles of ``tile`` latent positions,
    recorded as ``"tile"``: budgets apply to coders with that tile."""
    import onnxruntime as ort

    h, w = size
    if h % 16 or w % 16:
        raise ValueError(f"profile size {w}x{h} must be a multiple of 16")
    fp = prepare_model(model)
    widths = list(model.widths if widths is None else widths)
    points, rd_source = _eval_points(eval_json, fp.hex()) if eval_json else ({}, None)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(bundle) if bundle else export_bundle(
            model, Path(tmp) / "bundle", name, widths, adapters=[adapter] if adapter else ())
        loaded = Bundle.load(root)
        if loaded.fingerprint != fp:
            raise ValueError(f"{root} is a bundle of another model")
        domain = adapter.domain_id if adapter is not None else 0
        active = traceable_adapter(adapter) if adapter is not None else None
        result: dict[str, Any] = {"model": name, "fingerprint": fp.hex(), "size": [h, w],
                                  "tile": tile, "convention": CONVENTION,
                                  "memory": "peak RSS (VmHWM) of one onnxruntime inference "
                                            "in a child process, 1 thread, above its peak "
                                            "with the graph loaded",
                                  "threads_all": os.cpu_count(), "widths": []}
        if rd_source is not None:
            result["rd_source"] = rd_source
        if adapter is not None:
            result["adapter"] = {"domain": adapter.domain, "domain_id": domain,
                                 "method": adapter.method,
                                 "parameters": adapter.parameter_count}
        image = torch.rand(1, 3, h, w)
        edge = EdgeCodec(loaded, threads=1, tile=tile)
        small = (max(16, round(h / 2**0.5 / 16) * 16), max(16, round(w / 2**0.5 / 16) * 16))
        photos = {size: np.asarray(Image.open(sample_image()).convert("RGB")
                                   .resize((size[1], size[0]))) for size in ((h, w), small)}
        domain_name = adapter.domain if adapter is not None else None
        with model.using_adapter(active):
            for width in widths:
                model.set_width(width)
                variable = isinstance(model, ModulatedSlimCAE)
                if variable:
                    lo, hi = model.lambda_range(width)
                    model.set_lambda(float(np.sqrt(lo * hi)))
                lmbda = (torch.full((1,), model.lmbda),) if variable else ()
                extra = {"lmbda": lmbda[0].numpy()} if variable else {}
                analysis, synthesis = graph_modules(model)
                with torch.inference_mode():
                    latent = model.analysis(image)
                entry: dict[str, Any] = {"width": width}
                for part, module, x, kind, feed in (
                        ("encoder", analysis, image, "analysis", "image"),
                        ("decoder", synthesis, latent, "synthesis", "latent")):
                    graph = loaded.graph(width, kind, domain=domain)
                    feeds = {feed: x.numpy(), **extra}
                    latency: dict[str, dict[str, Any]] = {"onnxruntime": {}, "torch": {}}
                    for label, threads in (("threads_1", 1), ("threads_all", os.cpu_count() or 1)):
                        options = ort.SessionOptions()
                        options.intra_op_num_threads = threads
                        session = ort.InferenceSession(str(graph), options,
                                                       providers=["CPUExecutionProvider"])
                        latency["onnxruntime"][label] = _timings(repeats, session.run, None, feeds)
                        previous = torch.get_num_threads()
                        torch.set_num_threads(threads)
                        with torch.inference_mode():
                            latency["torch"][label] = _timings(repeats, module, x, *lmbda)
                        torch.set_num_threads(previous)
                    with torch.inference_mode():
                        macs = count_macs(module, (x, *lmbda))
                        coder_macs = _coder_macs(model, latent, part)
                        macs += coder_macs
                    params = count_parameters(model, width, part)
                    entry[part] = {
                        "macs": macs,
                        "coder_macs": coder_macs,
                        "params": params,
                        "weight_bytes": 4 * params["total"],
                        "graph_bytes": graph.stat().st_size,
                        "peak_memory_bytes": _peak_memory(graph, feeds),
                        "latency_ms": latency,
                    }
                edge_lmbda = float(model.lmbda) if variable else None
                times: dict[str, dict[tuple[int, int], dict[str, float]]] = {}
                for size, photo in photos.items():
                    coded = edge.encode_rgb(photo, width, False, edge_lmbda, domain_name)
                    times.setdefault("encoder", {})[size] = _timings(
                        repeats, edge.encode_rgb, photo, width, False, edge_lmbda, domain_name)
                    times.setdefault("decoder", {})[size] = _timings(
                        repeats, edge.decode_rgb, coded)
                for part, by_size in times.items():
                    entry[part]["latency_ms"]["edge"] = {
                        "threads_1": by_size[h, w],
                        "fit": latency_fit(by_size, (h, w), small, tile)}
                if width in points:
                    entry["points"] = points[width]
                result["widths"].append(entry)
            model.set_width(model.widths[0])
    return result


def latency_fit(times: dict[tuple[int, int], dict[str, float]], size: tuple[int, int],
                small: tuple[int, int], tile: int = DEFAULT_TILE) -> dict[str, Any]:
    """Latency as a fixed cost plus a cost per million pixels the tiled transforms run on,
    through the medians at two sizes (a cost per pixel alone where they disagree)."""
    big, little = processed_pixels(*size, tile=tile), processed_pixels(*small, tile=tile)
    t_big, t_little = times[size]["median"], times[small]["median"]
    slope = (t_big - t_little) / (big - little) * 1e6 if big > little else 0.0
    fixed = t_big - slope * big / 1e6
    if slope <= 0 or fixed < 0:  # noise: no fixed cost can be told apart
        slope, fixed = t_big / big * 1e6, 0.0
    return {"sizes": [list(size), list(small)], "fixed_ms": fixed, "ms_per_mpixel": slope}


def _eval_points(path: str | os.PathLike, fp: str) -> tuple[dict[int, list[dict[str, Any]]],
                                                            dict[str, Any]]:
    """Each width's RD points (bpp, PSNR, MS-SSIM, λ) from ``slimcodec eval --json``, and
    what they were measured on: the images' names and sizes."""
    data = json.loads(Path(path).read_text())
    if data.get("fingerprint") != fp:
        raise ValueError(f"{path} evaluates another model (fingerprint {data.get('fingerprint')})")
    points: dict[int, list[dict[str, Any]]] = {}
    for p in data["points"]:
        points.setdefault(int(p["width"]), []).append(
            {k: p[k] for k in ("bpp", "psnr", "ms_ssim", "lmbda") if k in p})
    images = {r["image"]: r.get("size") for r in data.get("per_image", [])}
    source = {"eval": str(path), "images": [{"image": Path(k).name, "size": v}
                                            for k, v in sorted(images.items())]}
    return points, source


def rd_span(entry: dict[str, Any]) -> tuple[float, float, float, float] | None:
    """A width's lowest and highest bpp and PSNR over its RD points (None without)."""
    pts = entry.get("points") or []
    if not pts:
        return None
    return (min(p["bpp"] for p in pts), max(p["bpp"] for p in pts),
            min(p["psnr"] for p in pts), max(p["psnr"] for p in pts))


def _envelope(curves: list[list[tuple[float, float]]]) -> list[tuple[float, float]]:
    """The best PSNR any curve reaches at each rate: each (bpp, PSNR) curve interpolated in
    log rate on a common grid, the maximum taken where at least one covers the rate."""
    lo = min(b for c in curves for b, _ in c)
    hi = max(b for c in curves for b, _ in c)
    grid = np.exp(np.linspace(np.log(lo), np.log(hi), 200))
    best = np.full(grid.shape, -np.inf)
    for c in curves:
        b, q = zip(*sorted(c), strict=True)
        inside = (grid >= b[0]) & (grid <= b[-1])
        best[inside] = np.maximum(best[inside],
                                  np.interp(np.log(grid[inside]), np.log(b), q))
    return [(float(x), float(y)) for x, y in zip(grid, best, strict=True) if np.isfinite(y)]


def plot_profile(profiles: dict[str, Any] | list[dict[str, Any]], path: str | os.PathLike
                 ) -> None:
    """What each width costs and buys, for one profile or several (one line style each):
    left, PSNR against bpp per width (with ``--eval`` points), the envelope over the widths
    dashed; right, each width's encoder and decoder MACs per pixel, its median onnxruntime
    latencies (one thread) written beside them. Without RD points, the right panel alone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    profiles = [profiles] if isinstance(profiles, dict) else list(profiles)
    rd = any(e.get("points") for p in profiles for e in p["widths"])
    fig, axes = plt.subplots(1, 2 if rd else 1, figsize=(13 if rd else 7, 5.5), squeeze=False)
    cost_ax = axes[0][-1]
    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "D"]
    for k, profile in enumerate(profiles):
        h, w = profile["size"]
        model = Path(profile["model"]).stem  # a model file's name, or the registered one
        style, marker = styles[k % len(styles)], markers[k % len(markers)]
        widths = [e["width"] for e in profile["widths"]]
        for part, filled in (("encoder", False), ("decoder", True)):
            macs = [e[part]["macs"] / (h * w) for e in profile["widths"]]
            cost_ax.plot(widths, macs, linestyle=style, marker=marker,
                         fillstyle="full" if filled else "none",
                         label=f"{model}: {part}")
            for e, m in zip(profile["widths"], macs, strict=True):
                ms = e[part]["latency_ms"]["onnxruntime"]["threads_1"]["median"]
                cost_ax.annotate(f"{ms:.3g} ms", (e["width"], m), fontsize=7,
                                 textcoords="offset points", xytext=(4, -10 if filled else 4))
        if not rd:
            continue
        ax = axes[0][0]
        curves = []
        for e in profile["widths"]:
            pts = sorted((p["bpp"], p["psnr"]) for p in e.get("points", []))
            if not pts:
                continue
            curves.append(pts)
            dec = e["decoder"]["macs"] / (h * w) / 1e3
            ms = e["decoder"]["latency_ms"]["onnxruntime"]["threads_1"]["median"]
            ax.plot(*zip(*pts, strict=True), linestyle=style, marker=marker, markersize=4,
                    label=f"{model} width {e['width']}: decoder {dec:.3g} kMAC/px, {ms:.3g} ms")
        if curves:
            env = _envelope(curves)
            ax.plot(*zip(*env, strict=True), color="black", linestyle=style, linewidth=2.5,
                    alpha=0.35, label=f"{model}: envelope over widths")
    if rd:
        ax = axes[0][0]
        images = max(len((p.get("rd_source") or {}).get("images", [])) for p in profiles)
        ax.set(xlabel="bits per pixel", ylabel="PSNR (dB)", xscale="log",
               title=f"what each width buys (mean over {images} images)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    h, w = profiles[0]["size"]
    cost_ax.set(xlabel="width (channels)", ylabel="MACs per pixel", yscale="log",
                title=f"what each width costs at {w}x{h} (latency: onnxruntime, 1 thread)")
    cost_ax.grid(alpha=0.3, which="both")
    cost_ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
