"""``slimcodec-edge``: encode and decode with a bundle, without torch.

    slimcodec-edge encode BUNDLE IN.png -o OUT.slc [--width W] [--domain NAME] [--threads N]
        [--tile N]
        [--lmbda L | --quality Q | --target-bpp B | --target-size BYTES | --target-psnr P]
        [--scale auto|S [--resampling lanczos|box]]
    slimcodec-edge decode BUNDLE IN.slc -o OUT.png [--threads N] [--tile N]

Bad input (a corrupt file or bundle, a file of another model, an unreadable image) ends with
one line on stderr and exit status 2, as with ``slimcodec``.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence
from pathlib import Path

from slimcodec.errors import SlimcodecError
from slimcodec.gating import adapter_domain
from slimcodec.rate_control import (
    RATE_OPTIONS,
    add_rate_arguments,
    coded_summary,
    encode_with_rate,
    rate_arguments,
)
from slimcodec.scaling import check_scale, coded_size, fixed_scale
from slimcodec.tiling import add_tile_argument
from slimcodec.utils.console import (
    for_each_file,
    positive_int,
    run_command,
    summary,
)
from slimcodec.utils.image import IMAGE_SUFFIXES, image_argument, load_rgb
from slimcodec.utils.io import output_paths, read_input, write_output

from ..select import add_budget_arguments, apply_budget, has_budget
from .runtime import DEFAULT_MAX_PIXELS, EdgeCodec

PROG = "slimcodec-edge"


def _codec(args: argparse.Namespace) -> EdgeCodec:
    return EdgeCodec(args.bundle, threads=args.threads, int8=args.int8,
                     max_pixels=args.max_pixels, tile=args.tile)


def cmd_encode(args: argparse.Namespace) -> int:
    pairs = output_paths(args.input, args.output, ".slc", takes=IMAGE_SUFFIXES,
                         what="image")
    check_scale(args.scale)  # before the work, once for every file
    codec = _codec(args)
    domain = args.domain or codec.bundle.default_domain  # the exporter's, as slimcodec's
    # each image its own copy of the options: a budget sets the width for its size
    return for_each_file(pairs, lambda source, output: _encode(
        copy.copy(args), codec, domain, source, output), args.output, prog=PROG)


def _encode(args: argparse.Namespace, codec: EdgeCodec, domain: str | None, source: str,
            output: str) -> None:
    named = adapter_domain(domain)
    domain_id = codec.bundle.domain_id(named) if named is not None else 0
    variable = codec.bundle.variable_rate
    rgb, grayscale = load_rgb(image_argument(source), max_pixels=codec.max_pixels)
    if has_budget(args):  # its width is chosen for one coded size
        args.scale = fixed_scale(args.scale)
    choice = apply_budget(args, codec.fingerprint, domain_id,
                          codec.bundle.lambda_range if variable else None,
                          rate_given=any(getattr(args, o) is not None for o in RATE_OPTIONS),
                          image_size=coded_size(*rgb.shape[:2], fixed_scale(args.scale)))
    if choice is not None:
        print(f"budget: width {choice.width} ({choice.reason})", file=sys.stderr)
    data, search = encode_with_rate(codec, rgb, grayscale, args.width, domain=domain,
                                    **rate_arguments(args))
    if args.verbose and search is not None:
        print(f"rate control: {search.describe()}", file=sys.stderr)
    write_output(output, lambda f: f.write(data))
    summary(output, coded_summary(data, search))


def cmd_decode(args: argparse.Namespace) -> int:
    pairs = output_paths(args.input, args.output, ".png", takes=(".slc",),
                         what=".slc file")
    for _, output in pairs:
        if Path(output).suffix.lower() not in ("", ".png"):
            raise SlimcodecError(f"{output}: write decoded images as .png")
    codec = _codec(args)

    def decode(source: str, output: str) -> None:
        image = codec.decode(read_input(source))
        write_output(output, lambda f: image.save(f, format="PNG"))
        summary(output, f"{image.width}x{image.height} {image.mode}")

    return for_each_file(pairs, decode, args.output, decoding=True, prog=PROG)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name, func, what in (("encode", cmd_encode, "an image"), ("decode", cmd_decode,
                                                                   "a .slc file")):
        c = sub.add_parser(name, help=f"{name} {what}")
        c.add_argument("bundle", help="bundle folder written by `slimcodec export`")
        c.add_argument("input", nargs="+", help="'-': standard input; or several files, or "
                       "folders (their " + ("images" if name == "encode" else ".slc files")
                       + ", subfolders included)")
        c.add_argument("-o", "--output", required=True,
                       help="'-': standard output; or a folder: each input's name with "
                            f"{'.slc' if name == 'encode' else '.png'}, a folder's files at "
                            "their paths below it (several inputs need one; a folder input "
                            "makes it)")
        c.add_argument("--threads", type=int, default=0,
                       help="onnxruntime threads (default: all cores)")
        c.add_argument("--int8", action="store_true", help="use the bundle's int8 graphs")
        c.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS)
        add_tile_argument(c)
        if name == "encode":
            c.add_argument("--width", type=int, help="network width (default: the widest)")
            add_rate_arguments(c)
            c.add_argument("-v", "--verbose", action="store_true",
                           help="say what a target search chose and how many passes it took")
            c.add_argument("--domain", help="code with this built-in domain adapter "
                                            "(slimcodec export --adapter); 'auto': the gate "
                                            "picks it, or none, by RD loss; 'mix': the gate "
                                            "weighs the decoder adapters; 'gate': the learned "
                                            "gate (slimcodec export --gate) weighs them; "
                                            "'source': the model alone (default: the "
                                            "bundle's, 'auto' where export built in the "
                                            "model's shipped adapters)")
            add_budget_arguments(c, required_profile=False)
        c.set_defaults(func=func)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args, args.func, PROG, decoding=("decode",))


if __name__ == "__main__":
    sys.exit(main())
