"""What a domain adapter costs on the device (issue 13): multiply-adds and decode time.

For each adapter kind of the model (`bias`; `adapters` and `extend`, with and without their
output filter), at every width:

* decoder and encoder multiply-adds per pixel, counted by fvcore under `slimcodec
  profile`'s convention (`slimcodec_edge.profile.count_macs`), against the source codec's;
* decode time against the source codec's, with the graphs of a deployment bundle that has
  every kind built in (`slimcodec export --adapter`) on onnxruntime with one thread, as on
  a small device; the runs of all kinds are interleaved in one process, so that the ratios
  survive a shared, noisy machine.

An adapter's cost does not depend on its values, so fresh adapters are measured.

    python benchmarks/adapter_cost.py [--model slimcae] [--size 384x256] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import onnxruntime as ort
import torch
from common import table_head, write_section
from slimcodec_edge.bundle import Bundle
from slimcodec_edge.onnx_export import export_bundle, graph_modules, traceable_adapter
from slimcodec_edge.profile import count_macs

from slimcodec.adaptation import DomainAdapter
from slimcodec.models import ModulatedSlimCAE
from slimcodec.zoo import load_model

KINDS = (("bias", True), ("adapters", True), ("adapters", False), ("extend", True),
         ("extend", False))


def label(method: str, output_filter: bool) -> str:
    return method if output_filter or method == "bias" else f"{method}-nofilter"


def interleaved(runs: dict[str | None, Callable[[], object]], repeats: int
                ) -> dict[str | None, float]:
    """The median seconds of each run, the runs taken in turn ``repeats`` times."""
    for run in runs.values():
        run()  # warm-up
    seconds: dict[str | None, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - t0)
    return {name: statistics.median(s) for name, s in seconds.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="slimcae")
    p.add_argument("--size", default="384x256", help="WxH of the image coded")
    p.add_argument("--repeats", type=int, default=15, help="timed decodes per kind and width")
    args = p.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    torch.manual_seed(0)
    model = load_model(args.model).eval()
    adapters = {label(m, f): traceable_adapter(DomainAdapter(model, m, label(m, f),
                                                             output_filter=f))
                for m, f in KINDS}
    image = torch.rand(1, 3, h, w)
    pixels = h * w
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    macs_rows, time_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Bundle.load(export_bundle(model, f"{tmp}/bundle", args.model,
                                           adapters=list(adapters.values())))
        for width in model.widths:
            model.set_width(width)
            extra: tuple[torch.Tensor, ...] = ()
            if isinstance(model, ModulatedSlimCAE):
                lo, hi = model.lambda_range(width)
                model.set_lambda((lo * hi) ** 0.5)
                extra = (torch.full((1,), model.lmbda),)
            feeds_extra = {"lmbda": extra[0].numpy()} if extra else {}
            analysis, synthesis = graph_modules(model)
            with torch.inference_mode():
                latent = analysis(image, *extra)
            feeds = {"latent": latent.numpy(), **feeds_extra}
            macs, runs = {}, {}
            for name in (None, *adapters):
                adapter = adapters[name] if name else None
                model.set_adapter(adapter)
                with torch.inference_mode():
                    macs[name] = (count_macs(analysis, (image, *extra)) / pixels,
                                  count_macs(synthesis, (latent, *extra)) / pixels)
                graph = bundle.graph(width, "synthesis",
                                     domain=adapter.domain_id if adapter else 0)
                session = ort.InferenceSession(str(graph), options,
                                               providers=["CPUExecutionProvider"])
                runs[name] = lambda s=session: s.run(None, feeds)  # noqa: B023 (used at once)
            model.set_adapter(None)
            seconds = interleaved(runs, args.repeats)
            enc0, dec0 = macs[None]
            cells = []
            for name in adapters:
                enc, dec = macs[name]
                cells.append(f"+{100 * (dec / dec0 - 1):.1f}%"
                             + (f", encoder +{100 * (enc / enc0 - 1):.1f}%" if enc != enc0
                                else ""))
            macs_rows.append(f"| {width} | {dec0:,.0f} | {enc0:,.0f} | " + " | ".join(cells)
                             + " |")
            time_rows.append(f"| {width} | {1000 * seconds[None]:.1f} | " + " | ".join(
                f"×{seconds[n] / seconds[None]:.2f}" for n in adapters) + " |")
            print(macs_rows[-1], time_rows[-1], sep="\n", flush=True)
    kinds = [f"`{name}`" for name in adapters]
    body = f"""## Adapter cost: multiply-adds and decode time per adapter kind (`{args.model}`)

A {w}x{h} image. Fresh adapters of every kind (their cost does not depend on their
values); `-nofilter`: `adapt --no-output-filter`. Files coded without an adapter (domain 0)
cost exactly the source codec's.

Multiply-adds per pixel under `slimcodec profile`'s convention (fvcore for convolutions, one
per output element for GDN, modulation and other elementwise ops): the source codec's, and
what each adapter adds to the decoder (and to the encoder, where it has an encoder part).

{table_head(["width", "source decoder MACs/px", "source encoder MACs/px", *kinds])}
{chr(10).join(macs_rows)}

Decode time (synthesis transform) of each kind as a multiple of the source codec's: the
graphs of one bundle with every kind built in (`slimcodec export --adapter`), onnxruntime
on 1 thread; medians of {args.repeats} runs per kind, the kinds' runs interleaved.

{table_head(["width", "source onnxruntime ms", *kinds])}
{chr(10).join(time_rows)}"""
    write_section("adapter_cost", body)
    print(body)


if __name__ == "__main__":
    main()
