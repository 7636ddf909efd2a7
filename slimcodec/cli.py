"""The ``slimcodec`` command line.

The light commands (``info``, ``models``, ``select`` and ``--help``) run here without
importing torch: they start fast, and work where only the edge runtime is installed. The
others load the models: :mod:`slimcodec.commands` builds and runs them.

Bad input (a corrupt, truncated or foreign file, a file written by another model, an
unreadable image, an unknown model) ends with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from slimcodec.bitstream import domain_id, unpack
from slimcodec.bitstream.container import RESAMPLING
from slimcodec.data import sample_image
from slimcodec.utils.console import HELP, run_command
from slimcodec.utils.io import read_input
from slimcodec.zoo.catalog import RETIRED, find_by_fingerprint, shipped_adapters

__all__ = ["main", "sample_image"]

LIGHT = ("info", "models", "select")


def cmd_info(args: argparse.Namespace) -> int:
    data = read_input(args.input)
    bitstream = unpack(data)
    h = bitstream.header
    retired = RETIRED.get(h.fingerprint.hex())
    model = find_by_fingerprint(h.fingerprint)
    # The adapter that coded it, where it is one that ships with the model (the gate's pick).
    shipped = {domain_id(a["domain"]): a["domain"] for a in shipped_adapters(model or "")}
    info = {
        "file_bytes": len(data),
        "fingerprint": h.fingerprint.hex(),
        "model": model or (
            f"{retired[0]} (retired: slimcodec {retired[1]} decodes it)" if retired else None),
        "width": h.width,
        "image_height": h.image_size[0],
        "image_width": h.image_size[1],
        "coded_height": h.coded[0],  # the image's own, unless coded upsampled (--scale)
        "coded_width": h.coded[1],
        "resampling": RESAMPLING[h.resampling] if h.coded_size else None,
        "grayscale": h.grayscale,
        "rate_kind": h.rate_kind.name.lower(),
        "rate": h.rate,
        "domain": h.domain,
        "domain_name": "source" if h.domain == 0 else shipped.get(h.domain),
        "mixture": {str(d): w for d, w in h.mixture},
        "mixture_names": {shipped.get(d, str(d)): w for d, w in h.mixture},
        "palette": len(h.palette),  # colours the decoder snaps onto (0: none)
        "palette_reach": h.palette_reach,
        "index_map_bytes": len(h.index_map),  # the exact blocks' indices (0: none)
        "residual_bytes": len(h.residual),  # the corrected blocks' residual (0: none)
        "string_bytes": [len(s) for s in bitstream.strings],
        "bpp": 8 * len(data) / (h.image_size[0] * h.image_size[1]),
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            # the header stores λ as float32: 0.04, not 0.03999999910593033 (--json: as is)
            print(f"{key:>13}: {value:.6g}" if isinstance(value, float) else
                  f"{key:>13}: {value}")
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    from slimcodec_edge.select import select_for

    print(select_for(args, args.target_bpp, args.target_psnr, prefer=args.prefer).describe())
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from slimcodec.zoo.catalog import shipped_table

    rows = shipped_table()
    table = [("model", "kind", "widths", "lowest rate", "highest rate", "size")]
    for r in rows:
        m = r["measured"]
        ends = [f"{m[e]['bpp']:.2f} bpp {m[e]['psnr']:.1f} dB" if m else "not measured"
                for e in ("low", "high")]
        size = (f"{r['bytes'] / 1e6:.0f} MB" if r["bytes"] is not None else
                f"not installed ({r['distribution']})")
        kind = r["kind"] + "".join(f"; {d} adapter" for d in r["adapters"])
        table.append((r["name"] + (" (default)" if r["default"] else ""), kind,
                      "/".join(map(str, r["widths"])), *ends, size))
    sizes = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(c.ljust(n) for c, n in zip(row, sizes, strict=True)).rstrip())
    images = next((r["images"] for r in rows if r["measured"]), None)
    if images:
        print(f"\nrates: mean over {images} (benchmarks/model_table.py); the narrowest "
              "width at its lowest λ, the widest at its highest")
    if any(r["adapters"] for r in rows):
        print("adapters: shipped with their model, which codes each image through the one "
              "that suits it, or none (--domain source: the model alone)")
    return 0


def light_parser() -> argparse.ArgumentParser:
    """Every command is listed (``slimcodec --help``); only the light ones are built here."""
    from slimcodec_edge.select import add_budget_arguments  # numpy only

    p = argparse.ArgumentParser(
        prog="slimcodec", description="Width-switchable learned image codecs for edge devices.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in HELP.items():
        if name not in LIGHT:
            sub.add_parser(name, help=text, add_help=False)
    i = sub.add_parser("info", help=HELP["info"])
    i.add_argument("input", help=".slc file ('-': standard input)")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)
    se = sub.add_parser("select", help=HELP["select"])
    add_budget_arguments(se, required_profile=True)
    se.add_argument("--target-bpp", type=float)
    se.add_argument("--target-psnr", type=float)
    se.add_argument("--prefer", default="quality", choices=["quality", "cost"],
                    help="with a target: the width of the best quality there, or the "
                         "narrowest that reaches it (default: %(default)s)")
    se.set_defaults(func=cmd_select)
    ls = sub.add_parser("models", help=HELP["models"])
    ls.set_defaults(func=cmd_models)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in HELP and command not in LIGHT:
        from slimcodec.commands import main as full

        return full(argv)
    args = light_parser().parse_args(argv)
    return run_command(args, args.func)


if __name__ == "__main__":
    sys.exit(main())
