"""The ``slimcodec`` commands that need torch (the models): compress, decompress, eval,
demo, train, adapt, gate, generate, export, profile. :mod:`slimcodec.cli` dispatches here;
it runs the light ones (info, models, select, ``--help``) without loading torch.

Bad input (a corrupt, truncated or foreign file, a file written by another model, an
unreadable image, an unknown model) ends with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from slimcodec.api import DEFAULT_MODEL, codec_for, writer_of
from slimcodec.bitstream import Header, unpack
from slimcodec.codec import (
    DEFAULT_MAX_PIXELS,
    Codec,
    load_shipped_adapters,
    shipped_default_domain,
)
from slimcodec.data import sample_image
from slimcodec.domains import GENERATORS
from slimcodec.errors import SlimcodecError
from slimcodec.evaluate import evaluate, format_table
from slimcodec.gating import adapter_domain
from slimcodec.rate_control import (
    RATE_OPTIONS,
    add_rate_arguments,
    coded_summary,
    encode_with_rate,
    quality_to_lambda,
    rate_arguments,
    scale_argument,
)
from slimcodec.refine import DEFAULT_REFINE_STEPS, EFFORT_STEPS, steps_for_effort
from slimcodec.scaling import AUTO, FILTERS, check_scale, coded_size, fixed_scale
from slimcodec.tiling import add_tile_argument
from slimcodec.training import ARCHS, TrainConfig, train
from slimcodec.utils.console import HELP, for_each_file, positive_int, run_command, summary
from slimcodec.utils.image import IMAGE_SUFFIXES, find_images, image_argument, load_rgb
from slimcodec.utils.io import (
    atomic_write_bytes,
    check_not_input,
    check_writable,
    output_paths,
    read_input,
    write_output,
)
from slimcodec.zoo import load_model, save_model_file

GENERATE_MAX_PIXELS = 1 << 22  # per generated image (`slimcodec generate --size`)


def _json_safe(obj: Any) -> Any:
    """Replace non-finite floats (PSNR of an exact reconstruction) with null: JSON has none."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    return obj


def _write_json(path: str, obj: Any) -> None:
    text = json.dumps(_json_safe(obj), indent=2, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode())


def _apply_budget(args: argparse.Namespace, codec: Codec, domain: str | None,
                  image_size: tuple[int, int]) -> None:
    """With a budget (--budget-ms, --max-macs, --max-memory-mb), set --width (and, for a
    variable-rate model without another rate option, --lmbda) from the profile, which must
    be this model's, its figures scaled to the image (``image_size``) as coded at --scale,
    which a budget fixes (:func:`~slimcodec.scaling.fixed_scale`: ``auto`` codes at the
    image's own size); a target then searches λ at that width."""
    from slimcodec_edge.select import apply_budget, has_budget

    if not has_budget(args):
        return
    args.scale = fixed_scale(args.scale)
    # A gate's choice is per image: budget the source codec.
    named = adapter_domain(domain)
    domain_id = codec.adapter_for(named).domain_id if named is not None else 0
    rate_given = any(getattr(args, o) is not None for o in RATE_OPTIONS)
    choice = apply_budget(args, codec.fingerprint, domain_id,
                          codec.lambda_range if codec.variable_rate else None, rate_given,
                          coded_size(*image_size, args.scale))
    if choice is not None:
        print(f"budget: width {choice.width} ({choice.reason})", file=sys.stderr)


def _encode_refined(args: argparse.Namespace, codec: Codec, rgb: np.ndarray,
                    grayscale: bool, lmbda: float | None, steps: int, domain: str | None
                    ) -> bytes:
    """Encode with latent refinement, a progress bar on a terminal (or with -v)."""
    # auto's scale is chosen inside the encode: its bar counts steps without a total
    tiles = None if args.scale == AUTO else math.prod(
        -(-side // (codec.model.downsampling * codec.tile))
        for side in coded_size(*rgb.shape[:2], args.scale))
    report: dict[str, Any] = {}
    with tqdm(total=steps * tiles if tiles else None, desc="refine", unit="step", file=sys.stderr,
              disable=not sys.stderr.isatty() and not args.verbose) as bar:
        data = codec.encode_rgb(rgb, args.width, grayscale, lmbda, steps, report, bar.update,
                                domain, scale=args.scale, resampling=args.resampling,
                                palette=args.palette)
    if args.verbose and "chosen" in report:
        print(f"refinement: {report['chosen']} kept (RD loss {report['loss_plain']:.4f} plain, "
              f"{report['loss_refined']:.4f} refined), predicted PSNR "
              f"{report['psnr_predicted']:.2f} dB", file=sys.stderr)
    return data


def _with_adapters(codec: Codec, files: list[str] | None) -> Codec:
    """A copy of ``codec`` with the adapter files loaded (the cached codec stays as it is),
    which encodes with the one file's domain, or through the gate ``auto`` where that file
    joins others (several files, or a model's shipped adapters)."""
    if not files:
        return codec
    from slimcodec.adaptation import load_adapter

    adapted = copy.copy(codec)
    adapted.adapters = dict(codec.adapters)
    for path in files:
        adapted.add_adapter(load_adapter(path, codec.model))
    only = len(adapted.adapters) == 1
    adapted.default_domain = next(iter(adapted.adapters.values())).domain if only else "auto"
    return adapted


def _with_gate(codec: Codec, path: str | None) -> Codec:
    """``codec`` with the learned gate of ``path`` (for its loaded adapters), if given."""
    if path is None:
        return codec
    from slimcodec.adaptation import load_gate

    gated = copy.copy(codec)
    gated.gate = load_gate(path, codec.model, codec.adapters)
    return gated


def _domain(args: argparse.Namespace, codec: Codec) -> str | None:
    """The domain to encode with: --domain, else the learned gate's weights (--gate), else
    the codec's default (:func:`_with_adapters`; a shipped model's own adapters: the gate
    that picks one or none)."""
    if args.domain:
        return args.domain
    if codec.gate is not None:
        return "gate"
    return codec.default_domain


def cmd_compress(args: argparse.Namespace) -> int:
    pairs = output_paths(args.input, args.output, ".slc", takes=IMAGE_SUFFIXES,
                         what="image")
    check_scale(args.scale)  # before the work, once for every file
    codec = codec_for(args.model, args.max_pixels, args.tile)
    codec = _with_gate(_with_adapters(codec, args.adapter), args.gate)
    domain = _domain(args, codec)
    steps = args.refine if args.refine is not None else steps_for_effort(args.effort)
    # each image its own copy of the options: a budget sets the width for its size
    return for_each_file(pairs, lambda source, output: _compress(
        copy.copy(args), codec, domain, steps, source, output), args.output)


def _compress(args: argparse.Namespace, codec: Codec, domain: str | None, steps: int,
              source: str, output: str) -> None:
    rgb, grayscale = load_rgb(image_argument(source), max_pixels=codec.max_pixels)
    _apply_budget(args, codec, domain, rgb.shape[:2])
    search = None
    if steps and not _searching(args):  # the one pass gets a progress bar
        lmbda = args.lmbda
        if args.quality is not None:
            lmbda = quality_to_lambda(codec, codec.resolve_width(args.width), args.quality)
        data = _encode_refined(args, codec, rgb, grayscale, lmbda, steps, domain)
    else:
        data, search = encode_with_rate(codec, rgb, grayscale, args.width, refine=steps,
                                        domain=domain, **rate_arguments(args))
        if args.verbose and search is not None:
            print(f"rate control: {search.describe()}", file=sys.stderr)
    write_output(output, lambda f: f.write(data))
    summary(output, coded_summary(data, search) + _domain_words(codec, unpack(data).header))


def _searching(args: argparse.Namespace) -> bool:
    return any(getattr(args, o) is not None for o in ("target_bpp", "target_size",
                                                       "target_psnr"))


def _domain_words(codec: Codec, header: Header) -> str:
    """What a file's domain fields say, by domain name: the gate's choice, for the user."""
    name = {d: a.domain for d, a in codec.adapters.items()}
    if header.mixture:
        return ", adapters mixed: " + " + ".join(
            f"{w:g} {name[d]}" for d, w in header.mixture if w)
    return f", domain {name[header.domain]!r}" if header.domain else ""


def cmd_decompress(args: argparse.Namespace) -> int:
    pairs = output_paths(args.input, args.output, ".png", takes=(".slc",),
                         what=".slc file")
    for _, output in pairs:
        _format_for(output)  # before decoding: a bad extension should cost nothing

    codecs: dict[str, Codec] = {}  # per model: loaded once, with the adapter files

    def decompress(source: str, output: str) -> None:
        data = read_input(source)
        model = args.model or writer_of(data)
        if model not in codecs:
            codec = codec_for(model, args.max_pixels, args.tile)
            codecs[model] = _with_adapters(codec, args.adapter)
        image = codecs[model].decode(data)
        write_output(output, lambda f: image.save(f, format=_format_for(output)))
        summary(output, f"{image.width}x{image.height} {image.mode}")

    return for_each_file(pairs, decompress, args.output, decoding=True)


def _format_for(path: str) -> str:
    """Pillow's format name for the output's extension; PNG when there is none."""
    ext = Path(path).suffix.lower()
    if ext in ("", ".png"):
        return "PNG"
    Image.init()
    try:
        return Image.EXTENSION[ext]
    except KeyError:
        raise SlimcodecError(f"{path}: unknown image extension {ext!r} (use .png)") from None


def cmd_eval(args: argparse.Namespace) -> int:
    codec = codec_for(args.model, args.max_pixels, args.tile)
    codec = _with_gate(_with_adapters(codec, args.adapter), args.gate)
    images = find_images(args.dir)
    if args.json:  # before the work: an input must never become the report
        for image in images:
            check_not_input(args.json, image)
        check_writable(args.json)
    domain = _domain(args, codec)
    check_scale(args.scale)  # before the work
    result = evaluate(codec, images, args.widths, progress=not args.quiet, lmbdas=args.lmbdas,
                      refine=args.refine, domain=domain, repeats=args.repeats,
                      scale=args.scale, resampling=args.resampling)
    if args.json:
        _write_json(args.json, result)
    repeats = f", times: medians of {args.repeats} runs" if args.repeats > 1 else ""
    scaled = ("" if args.scale == 1 else ", scale chosen per image (auto)"
              if args.scale == AUTO else f", coded at scale {args.scale:g} ({args.resampling})")
    print(f"model {result['model']} ({result['fingerprint']}), {result['images']} "
          f"images{scaled}{repeats}")
    print(format_table(result))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    codec = codec_for(args.model)
    image = Path(args.image) if args.image else sample_image()
    result = evaluate(codec, [image], progress=False)
    h, w = result["per_image"][0]["size"]
    print(f"slimcodec demo: model {codec.name} ({codec.fingerprint.hex()}), "
          f"{image.name} {w}x{h}")
    summary = codec.model.file_meta.get("summary")
    if summary:
        print(f"model: {summary}")
    print(format_table(result))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    # Every option of `train` is a TrainConfig field of the same name.
    options = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    trainer = train(TrainConfig(**options), resume=args.resume)
    if trainer.is_main:
        print(f"{Path(args.out) / 'model.pt'}: {trainer.step} steps")
    return 0


def _train_defaults() -> dict[str, Any]:
    """TrainConfig's defaults, so that the CLI cannot drift from them."""
    defaults = {}
    for f in fields(TrainConfig):
        if f.default is not MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not MISSING:
            defaults[f.name] = f.default_factory()
    return defaults  # data and out have none: they are required


def cmd_adapt(args: argparse.Namespace) -> int:
    from slimcodec.adaptation import DEFAULT_STEPS, adapt, save_adapter

    check_writable(args.output)  # now, not after minutes of adaptation
    model = load_model(args.model)
    lambdas = model.file_meta.get("lambdas")
    result = adapt(model, args.data, args.method, args.domain, lambdas,
                   DEFAULT_STEPS if args.steps is None else args.steps, args.images,
                   args.subset, args.lr, patch=args.patch,
                   seed=args.seed, output_filter=not args.no_output_filter,
                   entropy_models=args.entropy_models)
    meta = {"domain": args.domain, "method": args.method, "steps": result.steps,
            "patch": args.patch, "images": result.images, "seconds": round(result.seconds, 1),
            "source": str(args.model), "lambdas": lambdas}
    if result.adapter is not None:
        fp = save_adapter(result.adapter, args.output, meta)
        size = Path(args.output).stat().st_size
        print(f"{args.output}: {args.method} adapter for domain {args.domain!r} (id "
              f"{result.adapter.domain_id}), {result.adapter.parameter_count} parameters, "
              f"{size} bytes, fingerprint {fp}; {result.steps} steps on {result.images} images "
              f"in {result.seconds:.0f} s")
    else:
        fp = save_model_file(result.model, args.output,
                             meta={**meta, "summary": f"{args.model} adapted to "
                                                      f"{args.domain} ({args.method})"})
        print(f"{args.output}: {args.method} model for domain {args.domain!r}, fingerprint "
              f"{fp.hex()}; {result.steps} steps on {result.images} images in "
              f"{result.seconds:.0f} s")
    return 0


def cmd_gate(args: argparse.Namespace) -> int:
    from slimcodec.adaptation import load_adapter, save_gate, train_gate

    data = {}
    for item in args.data:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise ValueError(f"--data takes DOMAIN=FOLDER, not {item!r}")
        data[name] = folder
    check_writable(args.output)
    model = load_model(args.model)
    adapters = [load_adapter(path, model) for path in args.adapter]
    result = train_gate(model, adapters, data, args.source_data, crops=args.crops,
                        images=args.images, seed=args.seed)
    fp = save_gate(result.gate, args.output, {"source": str(args.model), "crops": result.crops,
                                              "accuracy": result.accuracy})
    print(f"{args.output}: gate over {', '.join(repr(a.domain) for a in adapters)} and the "
          f"source, fingerprint {fp}; {result.accuracy:.1%} of {result.crops} training crops "
          f"(every width) given to their own domain, in {result.seconds:.0f} s")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise ValueError(f"--count must be at least 1, got {args.count}")
    w, h = _size(args.size)
    if w * h > GENERATE_MAX_PIXELS:  # drawn at twice the size, in float: memory grows fast
        raise ValueError(f"--size {args.size}: at most {GENERATE_MAX_PIXELS} pixels per image "
                         "(e.g. 2560x1600)")
    paths = GENERATORS[args.domain](args.output, args.count, seed=args.seed, size=(h, w))
    print(f"{args.output}: {len(paths)} {args.domain} images, {w}x{h}, seeds "
          f"{args.seed}-{args.seed + len(paths) - 1}")
    return 0


def _size(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` as two positive integers, or a ValueError that names the option."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size {text!r}: expected WIDTHxHEIGHT, e.g. 768x512") from None
    if w < 1 or h < 1:
        raise ValueError(f"size {text!r}: width and height must be positive")
    return w, h


def cmd_export(args: argparse.Namespace) -> int:
    from slimcodec_edge.onnx_export import export_bundle  # the deployment wing, loaded on demand
    from slimcodec_edge.quantize import describe_report

    if args.int8 and not args.calibration:
        raise SlimcodecError("--int8 needs --calibration DIR (images to calibrate on)")
    if args.int8_only and not args.int8:
        raise SlimcodecError("--int8-only needs --int8 and --calibration DIR")
    model = load_model(args.model)
    # The model's shipped adapters are built in, so that the bundle decodes every file the
    # model's codec writes by default; the --adapter files join them.
    adapters = load_shipped_adapters(model)
    default_domain = shipped_default_domain(adapters)  # from the shipped ones, not --adapter
    if args.adapter:
        from slimcodec.adaptation import load_adapter

        adapters += [load_adapter(path, model) for path in args.adapter]
    gate = None
    if args.gate:
        from slimcodec.adaptation import load_gate

        gate = load_gate(args.gate, model, {a.domain_id: a for a in adapters})
    out = export_bundle(model, args.output, str(args.model), args.widths,
                        args.calibration if args.int8 else None, adapters=adapters,
                        rd_lambdas=model.file_meta.get("lambdas"), gate=gate,
                        shared_weights=not args.no_shared_weights, int8_only=args.int8_only,
                        default_domain=default_domain)
    manifest = json.loads((out / "manifest.json").read_text())
    print(f"{out}: {manifest['model']} ({manifest['fingerprint']}), widths "
          f"{' '.join(map(str, manifest['widths']))}"
          + (", variable rate" if manifest["variable_rate"] else "")
          + "".join(f", domain {d['name']!r}" for d in manifest.get("domains", {}).values()))
    for line in describe_report(manifest):
        print(f"  {line}")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from slimcodec_edge.profile import plot_profile, profile_model, rd_span
    from slimcodec_edge.select import load_profile

    w, h = _size(args.size)
    if args.eval:
        check_not_input(args.json, args.eval)
    check_writable(args.json)
    others = [load_profile(path) for path in args.compare or ()]  # before the work
    model = load_model(args.model)
    adapter = None
    if args.adapter:
        from slimcodec.adaptation import load_adapter

        adapter = load_adapter(args.adapter, model)
    result = profile_model(model, str(args.model), (h, w), args.widths, args.repeats,
                           args.eval, adapter=adapter, tile=args.tile)
    _write_json(args.json, result)
    if args.plot:
        plot_profile([result, *others], args.plot)
    domain = f", with domain {adapter.domain!r} ({adapter.method})" if adapter else ""
    print(f"{args.json}: {result['model']} at {w}x{h}, tiles of {result['tile']}{domain}; "
          f"{result['convention']}")
    source = result.get("rd_source")
    rd = source is not None
    print(f"{'width':>5} {'enc MMAC':>9} {'dec MMAC':>9} {'params':>9} {'enc ms':>7} "
          f"{'dec ms':>7} {'edge enc':>8} {'edge dec':>8} {'dec MiB':>8}"
          + (f" {'bpp':>13} {'PSNR dB':>13}" if rd else ""))
    for e in result["widths"]:
        enc, dec = e["encoder"], e["decoder"]

        def ms(part: dict[str, Any], runtime: str = "onnxruntime") -> float:
            return part["latency_ms"][runtime]["threads_1"]["median"]

        span = rd_span(e)
        rd_cols = (f" {span[0]:>6.3f}-{span[1]:<6.3f} {span[2]:>6.2f}-{span[3]:<6.2f}"
                   if span else f" {'n/a':>13} {'n/a':>13}") if rd else ""
        print(f"{e['width']:>5} {enc['macs'] / 1e6:>9.0f} {dec['macs'] / 1e6:>9.0f} "
              f"{dec['params']['total']:>9} {ms(enc):>7.1f} {ms(dec):>7.1f} "
              f"{ms(enc, 'edge'):>8.1f} {ms(dec, 'edge'):>8.1f} "
              f"{dec['peak_memory_bytes'] / 2**20:>8.1f}{rd_cols}")
    print("enc ms, dec ms: the transforms' graphs in onnxruntime; edge enc, edge dec: the "
          "edge runtime's whole encode and decode (what budgets use); 1 thread")
    if rd:
        print(f"bpp and PSNR: the width's range over {len(source['images'])} images "
              f"({args.eval})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from slimcodec_edge.select import add_budget_arguments  # numpy only: cheap to load

    p = argparse.ArgumentParser(prog="slimcodec")
    sub = p.add_subparsers(dest="command", required=True)
    model_help = f"registered model name or model file (default: {DEFAULT_MODEL})"
    pixels_help = ("refuse images of more pixels (height x width) than this, before "
                   "allocating anything (default: %(default)s)")

    c = sub.add_parser("compress", help=HELP["compress"])
    c.add_argument("input", nargs="+", help="image file ('-': standard input), or several, "
                   "or folders (their images, subfolders included)")
    c.add_argument("-o", "--output", required=True,
                   help=".slc file ('-': standard output), or a folder: each input's name "
                        "with .slc, a folder's images at their paths below it (several "
                        "inputs need one; a folder input makes it)")
    c.add_argument("--model", default=DEFAULT_MODEL, help=model_help)
    c.add_argument("--width", type=int, help="network width (default: the widest)")
    add_rate_arguments(c)
    c.add_argument("--refine", type=int, nargs="?", const=DEFAULT_REFINE_STEPS,
                   help="refine the latent for this image with STEPS gradient steps "
                        f"(alone: {DEFAULT_REFINE_STEPS}); the decoder is unchanged")
    c.add_argument("--effort", type=int, default=0, choices=range(len(EFFORT_STEPS)),
                   help="encoder effort 0-6 as `cwebp -m`: refinement steps "
                        f"{', '.join(map(str, EFFORT_STEPS))} (default: %(default)s)")
    c.add_argument("-v", "--verbose", action="store_true",
                   help="say what a target search chose and how many passes it took")
    add_budget_arguments(c, required_profile=False)
    c.add_argument("--adapter", action="append",
                   help="domain adapter file (repeatable; with several, the gate picks)")
    c.add_argument("--domain", help="code with this adapter's domain ('source': the model "
                   "alone; 'auto', the default where adapters are loaded or ship with the "
                   "model: the gate picks one adapter or none per image; 'mix': the gate "
                   "weighs the decoder adapters per image, the weights in the file; 'gate': "
                   "the learned gate predicts the weights)")
    c.add_argument("--gate", help="learned gate file (`slimcodec gate`) over the --adapter "
                                  "files: it predicts their weights per image")
    c.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS, help=pixels_help)
    add_tile_argument(c)
    c.set_defaults(func=cmd_compress)

    d = sub.add_parser("decompress", help=HELP["decompress"])
    d.add_argument("input", nargs="+", help=".slc file ('-': standard input), or several, "
                   "or folders (their .slc files, subfolders included)")
    d.add_argument("-o", "--output", required=True,
                   help="image file, its format from the extension ('-': PNG on standard "
                        "output), or a folder: each input's name with .png, a folder's files "
                        "at their paths below it (several inputs need one; a folder input "
                        "makes it)")
    d.add_argument("--model", help="model name or file (default: the one that wrote the file)")
    d.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS, help=pixels_help)
    add_tile_argument(d)
    d.add_argument("--adapter", action="append",
                   help="domain adapter file (repeatable): the file's domain picks one")
    d.set_defaults(func=cmd_decompress)

    e = sub.add_parser("eval", help=HELP["eval"])
    e.add_argument("dir")
    e.add_argument("--model", default=DEFAULT_MODEL, help=model_help)
    e.add_argument("--widths", type=int, nargs="+", help="widths to evaluate (default: all)")
    e.add_argument("--lmbdas", type=float, nargs="+",
                   help="variable-rate models: the λ to evaluate at each width where they lie "
                        "in its range (default: 5 spread over each width's range)")
    e.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS, help=pixels_help)
    add_tile_argument(e)
    e.add_argument("--refine", type=int, default=0,
                   help="refine each latent with this many steps (default: none)")
    e.add_argument("--adapter", action="append",
                   help="measure the model adapted by this adapter file (repeatable: the "
                        "gate codes each image, as compress does)")
    e.add_argument("--domain", help="code every image with this adapter's domain, the model "
                                    "alone ('source'), or through a gate ('auto', 'mix', "
                                    "'gate'); default: as compress")
    e.add_argument("--gate", help="learned gate file over the --adapter files (as compress)")
    e.add_argument("--repeats", type=int, default=1,
                   help="code each image this many times per point: times are the medians")
    e.add_argument("--scale", type=scale_argument, default=AUTO,
                   help="code each image upsampled by this factor, or choose it per image "
                        "(auto), as compress --scale (default: %(default)s)")
    e.add_argument("--resampling", default="lanczos", choices=FILTERS,
                   help="--scale's filter, as compress --resampling (default: %(default)s)")
    e.add_argument("--json", help="write the results here")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_eval)

    m = sub.add_parser("demo", help=HELP["demo"])
    m.add_argument("--model", default=DEFAULT_MODEL, help=model_help)
    m.add_argument("--image", help="another image instead of the bundled sample")
    m.set_defaults(func=cmd_demo)

    d = _train_defaults()
    t = sub.add_parser("train", help=HELP["train"],
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--data", required=True, help="folder of training images (recursive)")
    t.add_argument("--out", required=True, help="run directory: checkpoint, log, model.pt")
    t.add_argument("--widths", type=int, nargs="+", default=d["widths"])
    t.add_argument("--lambdas", type=float, nargs="+", default=d["lambdas"],
                   help="one λ for all widths, or one per width (CompressAI convention)")
    t.add_argument("--gdn", default=d["gdn"], choices=["switch", "slim", "slim+"])
    t.add_argument("--arch", default=d["arch"], choices=list(ARCHS),
                   help="slimcae-vr: λ-modulated, a continuous rate inside every width; "
                        "slimcae-hp: slimcae-vr with a mean-scale hyperprior; slimcae-hpc: "
                        "slimcae-hp with a checkerboard context on the latent's means")
    t.add_argument("--lambda-ranges", type=float, nargs="+",
                   help="slimcae-vr: LOW HIGH for all widths, or a pair per width "
                        "(default: the architecture's)")
    t.add_argument("--rate-anchors", type=int, default=d["rate_anchors"],
                   help="slimcae-vr: entropy models per width, at log-spaced λ")
    t.add_argument("--hyper-hidden", type=float, default=d["hyper_hidden"],
                   help="slimcae-hp: hidden channels of the hyper-syntheses, a fraction of "
                        "the width (1/2 halves their decode cost)")
    t.add_argument("--lambda-bounds", type=float, nargs=2,
                   help="slimcae-vr: LOW HIGH, the λ any width may ever use, room for "
                        "λ-scheduling to move ranges (default: the ranges' envelope)")
    t.add_argument("--init", help="start from this model file or pretrained model")
    t.add_argument("--revive", type=float, metavar="SHIFT",
                   help="switch the --init model's dead latent channels back on, their "
                        "λ-modulation SHIFT log units below the live channels' (e.g. -2)")
    t.add_argument("--mix", nargs="+", metavar="SOURCE=FRACTION",
                   help="draw that fraction of crops from SOURCE (a folder, or 'screen' / "
                        "'illustration': generated in memory), the rest from --data; "
                        "e.g. --mix screen=0.15 illustration=0.1")
    t.add_argument("--steps", type=int, default=d["steps"])
    t.add_argument("--patch", type=int, default=d["patch"])
    t.add_argument("--batch", type=int, default=d["batch"])
    t.add_argument("--lr", type=float, default=d["lr"])
    t.add_argument("--aux-lr", type=float, default=d["aux_lr"])
    t.add_argument("--lr-schedule", default=d["lr_schedule"], choices=["cosine", "constant"])
    t.add_argument("--warmup", type=int, default=d["warmup"], metavar="STEPS",
                   help="ramp the step size up linearly over the run's first STEPS steps "
                        "(from --init weights, Adam's first updates otherwise undo some of "
                        "their training)")
    t.add_argument("--decoder-quantizer", default=d["decoder_quantizer"],
                   choices=["ste", "noise"],
                   help="what the decoder sees in training: the rounded latent with a "
                        "straight-through gradient, or the noisy one")
    t.add_argument("--rate-quantizer", default=d["rate_quantizer"], choices=["noise", "ste"],
                   help="what the rate term prices in training (slimcae-hp): the noisy "
                        "latent, or the rounded symbols the coder sends with a "
                        "straight-through gradient (for fine-tuning a trained model)")
    t.add_argument("--stage", default=d["stage"],
                   choices=["joint", "entropy", "context", "encoder", "decoder"],
                   help="entropy (slimcae-hp/-hpc): train the hyperprior (and context) "
                        "alone, on the rate, the transforms fixed; context (slimcae-hpc): "
                        "the checkerboard context alone, around a trained hyperprior; "
                        "encoder: train the encoder's side alone, on the RD "
                        "loss, the decoder's weights unchanged; decoder: train the synthesis "
                        "alone, on the distortion of the coded latent, every string the "
                        "model writes unchanged")
    t.add_argument("--crops", default=d["crops"], choices=["host", "device"],
                   help="device: hold the images on the training device and cut batches "
                        "there (for a GPU)")
    t.add_argument("--lambda-per", default=d["lambda_per"], choices=["batch", "image"],
                   help="variable-rate models: one λ per width for the batch, or one per "
                        "image and width (one entropy model per width)")
    t.add_argument("--precision", default=d["precision"], choices=["fp32", "bf16"],
                   help="bf16: the transforms under bfloat16 autocast (entropy models and "
                        "loss in float32)")
    t.add_argument("--log-every", type=int, default=d["log_every"],
                   help="write the log every K steps; K > 1: steps without host "
                        "synchronisation (for a GPU)")
    t.add_argument("--compile", action="store_true",
                   help="compile the step (torch.compile): fewer, fused kernels on a GPU; "
                        "the first step takes minutes")
    t.add_argument("--checkpoint-every", type=int, default=d["checkpoint_every"])
    t.add_argument("--time-limit", type=float, metavar="SECONDS",
                   help="stop after this long in this session: checkpoint and model file at "
                        "the last step (--resume continues)")
    t.add_argument("--seed", type=int, default=d["seed"])
    t.add_argument("--device", default=d["device"], help="auto, cpu, cuda")
    t.add_argument("--resume", action="store_true", help="continue from RUN_DIR's checkpoint")
    t.add_argument("--schedule", default=d["schedule"], choices=["fixed", "lambda"],
                   help="lambda: after --steps, λ-schedule the narrower widths (SlimCAE)")
    t.add_argument("--val", help="validation images (needed by --schedule lambda)")
    t.add_argument("--finetune-steps", type=int, default=d["finetune_steps"],
                   help="steps per λ-schedule try")
    t.add_argument("--finetune-lr", type=float, default=d["finetune_lr"],
                   help="learning rate at the start of each try, decayed (cosine) over it")
    t.add_argument("--lambda-factor", type=float, default=d["lambda_factor"])
    t.add_argument("--max-tries", type=int, default=d["max_tries"],
                   help="accepted λ steps per width pair")
    t.set_defaults(func=cmd_train)

    a = sub.add_parser("adapt", help=HELP["adapt"])
    a.add_argument("--model", default=DEFAULT_MODEL, help=model_help)
    a.add_argument("--data", required=True, help="folder of the domain's images")
    a.add_argument("--domain", required=True, help="the domain's name (its id is derived)")
    a.add_argument("--method", required=True,
                   choices=["finetune", "selective", "extend", "adapters", "bias"])
    a.add_argument("--subset", default="decoder", choices=["decoder", "entropy"],
                   help="selective: what to fine-tune (default: %(default)s)")
    a.add_argument("--steps", type=int, help="training steps (default: 400)")
    a.add_argument("--images", type=int, help="use the first K images of --data")
    a.add_argument("--patch", type=positive_int, default=64,
                   help="side of the square training crops (default: %(default)s)")
    a.add_argument("--lr", type=float,
                   help="Adam step size (default: 1e-4 for finetune and selective, 3e-3 for "
                        "the adapter methods)")
    a.add_argument("--no-output-filter", action="store_true",
                   help="adapters, extend: leave out the filter on the decoded image (1,728 "
                        "multiply-adds per pixel)")
    a.add_argument("--entropy-models", action=argparse.BooleanOptionalAction,
                   help="train the domain's own entropy models, which lower its rate (the "
                        "file grows by their tables; default: on for extend only)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("-o", "--output", required=True,
                   help="adapter file (extend, adapters, bias) or model file (the others)")
    a.set_defaults(func=cmd_adapt)

    gt = sub.add_parser("gate", help=HELP["gate"])
    gt.add_argument("--model", default=DEFAULT_MODEL, help=model_help)
    gt.add_argument("--adapter", action="append", required=True,
                    help="an adapters or bias adapter file to weigh (repeatable)")
    gt.add_argument("--data", action="append", required=True, metavar="DOMAIN=FOLDER",
                    help="images of an adapter's domain (one per --adapter)")
    gt.add_argument("--source-data", required=True,
                    help="images of the source model's own domain (photos)")
    gt.add_argument("--crops", type=int, default=32,
                    help="random 256x256 crops per folder (default: %(default)s)")
    gt.add_argument("--images", type=int,
                    help="use the first K images of each folder (default: all)")
    gt.add_argument("--seed", type=int, default=0)
    gt.add_argument("-o", "--output", required=True, help="gate file")
    gt.set_defaults(func=cmd_gate)

    g = sub.add_parser("generate", help=HELP["generate"])
    g.add_argument("domain", choices=sorted(GENERATORS))
    g.add_argument("-o", "--output", required=True, help="folder (created; files overwritten)")
    g.add_argument("--count", type=int, default=40, help="images (default: %(default)s)")
    g.add_argument("--seed", type=int, default=0,
                   help="first seed; image i is drawn from seed + i alone")
    g.add_argument("--size", default="768x512", help="WIDTHxHEIGHT (default: %(default)s)")
    g.set_defaults(func=cmd_generate)

    x = sub.add_parser("export", help=HELP["export"])
    x.add_argument("--model", default=DEFAULT_MODEL, help=model_help)
    x.add_argument("-o", "--output", required=True, help="bundle folder (replaced)")
    x.add_argument("--widths", type=int, nargs="+", help="widths to export (default: all)")
    x.add_argument("--int8", action="store_true",
                   help="also statically quantised int8 graphs (needs --calibration)")
    x.add_argument("--calibration",
                   help="folder of images: the int8 graphs are calibrated on its first 8 "
                        "and their cost measured on the next 8")
    x.add_argument("--int8-only", action="store_true",
                   help="with --int8: the int8 graphs alone, no float ones")
    x.add_argument("--no-shared-weights", action="store_true",
                   help="each graph holds its own weights (about twice the bytes) instead "
                        "of slicing one weights.bin")
    x.add_argument("--adapter", action="append",
                   help="domain adapter file to build in (repeatable): float graphs per width "
                        "that code and decode that domain's files (a shipped model's own "
                        "adapters are always built in)")
    x.add_argument("--gate", help="learned gate file over --adapter files, for the edge "
                                  "runtime's --domain gate")
    x.set_defaults(func=cmd_export)

    pr = sub.add_parser("profile", help=HELP["profile"])
    pr.add_argument("--model", default=DEFAULT_MODEL, help=model_help)
    pr.add_argument("--size", default="768x512", help="WIDTHxHEIGHT, multiples of 16")
    pr.add_argument("--widths", type=int, nargs="+", help="widths to profile (default: all)")
    pr.add_argument("--repeats", type=int, default=10, help="timed runs per measurement")
    pr.add_argument("--eval", help="`slimcodec eval --json` of the same model: RD points")
    pr.add_argument("--adapter", help="profile the codec adapted by this domain adapter file "
                                      "(what `select` must budget for when coding that domain)")
    add_tile_argument(pr)
    pr.add_argument("--json", required=True, help="write the profile here")
    pr.add_argument("--plot", help="plot (PNG): PSNR against bpp per width with --eval, "
                    "and each width's MACs and latency")
    pr.add_argument("--compare", nargs="+", metavar="PROFILE.json",
                    help="other models' profiles (slimcodec profile --json) on the same plot")
    pr.set_defaults(func=cmd_profile)

    return p



def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args, args.func)
