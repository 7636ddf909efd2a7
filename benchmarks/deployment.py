"""Deployment figures, each measured side by side in one run (this machine is shared and noisy):

* per width, onnxruntime latency against PyTorch's, encoder and decoder, 1 thread and all;
* narrowest against widest: MAC ratio and measured latency ratio;
* the widest decoder's achieved MAC/s in onnxruntime against a float32 matrix-multiply
  peak measured in the same run (onnxruntime MatMul, 1 thread);
* peak RSS of decoding one file with the edge runtime against PyTorch (target <= 1/3);
* width switching in PyTorch (target < 1 ms, no weight copies) against loading a separate
  model per width.

    python benchmarks/deployment.py [--model M (default: the default model)] [--size 768x512] \
        [--repeats 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from common import table_head, write_section
from onnx import TensorProto, helper
from slimcodec_edge.onnx_export import export_bundle
from slimcodec_edge.profile import profile_model

from slimcodec.api import codec_for
from slimcodec.cli import sample_image
from slimcodec.utils.image import load_rgb
from slimcodec.zoo import DEFAULT_MODEL, load_model, save_model_file

DECODE_CHILD = r"""
import sys, warnings
warnings.filterwarnings("ignore")
def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
runtime, bundle_or_model, path = sys.argv[1:4]
data = open(path, "rb").read()
if runtime == "edge":
    from slimcodec_edge.edge import EdgeCodec
    codec = EdgeCodec(bundle_or_model, threads=1)
else:
    import torch
    torch.set_num_threads(1)
    from slimcodec.api import codec_for
    codec = codec_for(bundle_or_model)
codec.decode_rgb(data)
print(hwm())
"""


def matmul_peak(repeats: int) -> float:
    """MAC/s of a 1024x1024x1024 float32 MatMul in onnxruntime, one thread (best of runs)."""
    n = 1024
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "mm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    a = np.random.rand(n, n).astype(np.float32)
    feeds = {"a": a, "b": a}
    session.run(None, feeds)
    best = min(_time(session.run, None, feeds) for _ in range(repeats))
    return n**3 / best


def _time(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--size", default="768x512")
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    model = load_model(args.model)
    peak = matmul_peak(args.repeats)
    profile = profile_model(model, args.model, (h, w), repeats=args.repeats)
    rows = []
    for e in profile["widths"]:
        cells = [str(e["width"])]
        for part in ("encoder", "decoder"):
            lat = e[part]["latency_ms"]
            for threads in ("threads_1", "threads_all"):
                o, t = lat["onnxruntime"][threads]["median"], lat["torch"][threads]["median"]
                cells.append(f"{o:.1f} / {t:.1f} ({o / t:.2f})")
        rows.append("| " + " | ".join(cells) + " |")
    wide, narrow = profile["widths"][0], profile["widths"][-1]
    ratio_rows = []
    for part in ("encoder", "decoder"):
        macs = wide[part]["macs"] / narrow[part]["macs"]
        lat = [wide[part]["latency_ms"]["onnxruntime"][t]["median"]
               / narrow[part]["latency_ms"]["onnxruntime"][t]["median"]
               for t in ("threads_1", "threads_all")]
        ratio_rows.append(f"| {part} | {macs:.1f}x | {lat[0]:.1f}x | {lat[1]:.1f}x |")
    dec = wide["decoder"]
    dec_ms = dec["latency_ms"]["onnxruntime"]["threads_1"]["median"]
    achieved = dec["macs"] / (dec_ms / 1e3)

    # Peak RSS of one decode, edge runtime against PyTorch, same file, 1 thread each.
    rgb, _ = load_rgb(sample_image())
    rgb = np.resize(rgb, (h, w, 3))
    with tempfile.TemporaryDirectory() as tmp:
        bundle = export_bundle(model, Path(tmp) / "bundle", args.model)
        save_model_file(model, Path(tmp) / "model.pt")
        data = codec_for(args.model).encode_rgb(rgb)
        (Path(tmp) / "x.slc").write_bytes(data)
        rss = {}
        for runtime, target in (("edge", bundle), ("torch", Path(tmp) / "model.pt")):
            out = subprocess.run([sys.executable, "-c", DECODE_CHILD, runtime, str(target),
                                  str(Path(tmp) / "x.slc")], capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(out.stderr[-2000:])
            rss[runtime] = int(out.stdout.strip().splitlines()[-1]) / 1024

    # Width switching against one model per width.
    switch = []
    for _ in range(200):
        for width in model.widths:
            switch.append(_time(model.set_width, width))
    ptrs = {n: p.data_ptr() for n, p in model.named_parameters()}
    model.set_width(model.widths[-1])
    same = all(p.data_ptr() == ptrs[n] for n, p in model.named_parameters())
    loads = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.pt"
        save_model_file(model, path)
        for _ in range(3):
            loads.append(_time(load_model, path))
    model.set_width(model.widths[0])
    body = f"""## Deployment: runtimes, width ratios, memory and switching (`{args.model}`)

Image {w}x{h}; {profile['threads_all']} threads is "all". Latency medians over
{args.repeats} runs: onnxruntime / PyTorch in ms, their ratio in brackets (below 1: onnxruntime
is faster).

{table_head(["width", "encoder, 1 thread", "encoder, all", "decoder, 1 thread",
             "decoder, all"])}
{chr(10).join(rows)}

Widest ({wide['width']}) against narrowest ({narrow['width']}), onnxruntime:

{table_head(["side", "MAC ratio", "latency ratio, 1 thread", "latency ratio, all"])}
{chr(10).join(ratio_rows)}

Widest decoder: {dec['macs'] / 1e9:.2f} GMAC in {dec_ms:.0f} ms
= **{achieved / 1e9:.2f} GMAC/s** on one thread, against **{peak / 1e9:.1f} GMAC/s** for a
1024³ float32 MatMul in onnxruntime on one thread in the same run: {achieved / peak:.0%} of it.

Peak RSS of a process decoding the same {w}x{h} file (width {wide['width']}, 1 thread):
edge runtime **{rss['edge']:.0f} MiB**, PyTorch **{rss['torch']:.0f} MiB**, ratio
**{rss['edge'] / rss['torch']:.2f}** (target <= 0.33).

Width switching (`model.set_width`), PyTorch: median **{1e6 * statistics.median(switch):.1f} µs**,
max {1e6 * max(switch):.1f} µs over {len(switch)} switches; parameters keep their storage
(no copy): {same}. Loading a separate model file per width instead: median
{1e3 * statistics.median(loads):.0f} ms."""
    write_section(f"deployment-{args.model}", body)
    print(body)
    Path("/tmp/slimcodec-profile.json").write_text(json.dumps(profile))


if __name__ == "__main__":
    main()
