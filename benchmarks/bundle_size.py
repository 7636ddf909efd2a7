"""Bundle sizes: a lean bundle (shared weights stored once, `slimcodec_edge.shared_weights`)
against a bundle whose graphs hold their own weights, and against the widest width's graphs
alone; and that both bundles write the same file for the sample image at every width. Every
bundle builds in the model's shipped domain adapters, as ``slimcodec export`` does; one row
leaves them out, to show what they cost.

    python benchmarks/bundle_size.py [--model slimcae-hp] [--calibration DIR]

With ``--calibration``, also an int8-only bundle (``slimcodec export --int8 --int8-only``)
against the lean float one.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from common import table_head, write_section
from PIL import Image
from slimcodec_edge.edge import EdgeCodec
from slimcodec_edge.onnx_export import export_bundle
from slimcodec_edge.quantize import describe_report

from slimcodec.codec import load_shipped_adapters, shipped_default_domain
from slimcodec.data import sample_image
from slimcodec.zoo import DEFAULT_MODEL, load_model


def size(root: Path, suffix: str = "") -> int:
    return sum(f.stat().st_size for f in root.iterdir() if f.name.endswith(suffix))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--calibration", help="images to calibrate an int8-only bundle on")
    args = p.parse_args()
    model = load_model(args.model)
    widest = model.widths[0]
    # What `slimcodec export` builds in: the shipped adapters, and the encoder's default.
    adapters = load_shipped_adapters(model)
    shipped = {"adapters": adapters, "default_domain": shipped_default_domain(adapters)}
    with tempfile.TemporaryDirectory() as tmp:
        full = export_bundle(model, Path(tmp) / "full", args.model, shared_weights=False,
                             **shipped)
        lean = export_bundle(model, Path(tmp) / "lean", args.model, **shipped)
        # Lean too: with adapters, one width's graphs (the source's, each adapter's, the
        # mixing one) slice the same decoder weights, which a lean bundle stores once.
        alone = export_bundle(model, Path(tmp) / "alone", args.model, widths=[widest],
                              **shipped)
        rgb = np.asarray(Image.open(sample_image()).convert("RGB"))
        a, b = EdgeCodec(full), EdgeCodec(lean)
        domain = shipped["default_domain"]  # what `slimcodec-edge encode` codes with
        same = all(a.encode_rgb(rgb, w, domain=domain) == b.encode_rgb(rgb, w, domain=domain)
                   for w in model.widths)
        data = a.encode_rgb(rgb, widest)
        same_pixels = np.array_equal(a.decode_rgb(data)[0], b.decode_rgb(data)[0])
        widest_graphs = size(alone, ".onnx") + size(alone, ".bin")
        rows = [(f"all {len(model.widths)} widths, each graph its own weights", full),
                (f"all {len(model.widths)} widths, lean (shared weights stored once)", lean),
                (f"width {widest} alone (lean)", alone)]
        if adapters:
            bare = export_bundle(model, Path(tmp) / "bare", args.model)
            rows.insert(2, (f"all {len(model.widths)} widths, lean, without the adapters", bare))
        int8_line = ""
        if args.calibration:
            int8 = export_bundle(model, Path(tmp) / "int8", args.model,
                                 calibration=args.calibration, int8_only=True, **shipped)
            rows.append((f"all {len(model.widths)} widths, int8 only (lean)", int8))
            int8_graphs = sum(f.stat().st_size for f in int8.glob("*.int8.onnx"))
            report = describe_report(json.loads((int8 / "manifest.json").read_text()))
            int8_line = (f"\n- int8 only against the lean float bundle: "
                         f"**{size(int8) / size(lean):.3f}x** (target <= 0.35): the int8 "
                         f"graphs {int8_graphs / 2**20:.1f} MiB, weights.bin (the widest "
                         f"width's int8 weights, every narrower width's slices of them, and "
                         f"the GDNs' float weights) {size(int8, '.bin') / 2**20:.1f} MiB, "
                         f"entropy tables {size(int8, '.npz') / 2**20:.1f} MiB (calibrated "
                         f"on `{args.calibration}`).\n- What int8 costs (the export's own report, "
                         f"as `slimcodec export` prints it, on tiles of the calibration "
                         f"folder; `benchmarks/int8.py` measures other photos, whole):"
                         + "".join(f"\n  - {line}" for line in report))
        lean_ratio = (size(lean, ".onnx") + size(lean, ".bin")) / widest_graphs
        whole_ratio = size(lean) / size(alone)
        table = "\n".join(
            f"| {label} | {size(root, '.onnx') / 2**20:.1f} | {size(root, '.bin') / 2**20:.1f} "
            f"| {size(root, '.npz') / 2**20:.1f} | **{size(root) / 2**20:.1f}** | "
            f"{size(root) / widest_graphs:.2f} |" for label, root in rows)
    built_in = (f"Each bundle builds in the model's shipped adapters "
                f"({', '.join(repr(a.domain) for a in adapters)}: their graphs, and a mixing "
                "synthesis graph per width), as `slimcodec export` does, but the one that "
                "says it does not. " if adapters else "")
    body = f"""## Bundle size: lean bundles (`{args.model}`)

`python benchmarks/bundle_size.py --model {args.model}{' --calibration ' + args.calibration
if args.calibration else ''}`: `slimcodec export` of every width,
lean (the default: the weights every width slices stored once in `weights.bin`, the entropy
tables' repeated arrays once, `table_slices`) and with `shared_weights=False` (each graph
its own weights), and the widest width alone. {built_in}MiB:

{table_head(["bundle", "graphs (.onnx)", "weights.bin", "entropy.npz", "total",
             f"total / width {widest}'s graphs and weights"])}
{table}

- Every width's graphs and their weights, lean, against width {widest}'s alone:
  **{lean_ratio:.2f}x** (target <= 1.15); the whole lean bundle against the whole bundle of
  width {widest} alone: {whole_ratio:.2f}x.
- The same file from both bundles at every width (sample image, coded as `slimcodec-edge
  encode` codes it: {domain or 'the model alone'}): **{same}**; the same pixels decoded:
  **{same_pixels}**.{int8_line}"""
    write_section(f"bundle-size-{args.model}", body)
    print(body)


if __name__ == "__main__":
    main()
