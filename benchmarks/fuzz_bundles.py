"""Hostile bundles against the edge runtime: forged manifests, paths out of the folder,
damaged graphs and tables, links. Each bundle is a copy of a small valid one with one to
three hostile edits; a child process loads it with ``EdgeCodec`` and codes a small image
both ways. Outcomes: an image (the edit was harmless), a typed error, or a finding (an
untyped error, a crash, a hang, or an open of the canary files outside the bundle that the
hostile paths name, seen by a Python audit hook). Writes RESULTS.md section ``fuzz_bundles``.

    python benchmarks/fuzz_bundles.py [--bundles 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import Child, outcome_table, write_section

CHILD = r"""
import json, sys, warnings
warnings.filterwarnings("ignore")
opened = []
def hook(event, args):
    if event == "open" and args and "canary" in str(args[0]):
        opened.append(str(args[0]))
sys.addaudithook(hook)
import numpy as np
from slimcodec_edge.edge import EdgeCodec
from slimcodec.errors import SlimcodecError
rgb = (np.arange(40 * 56 * 3) % 251).astype(np.uint8).reshape(40, 56, 3)
for line in sys.stdin:
    root = line.strip()
    try:
        edge = EdgeCodec(root, threads=1)
        for width in edge.widths:
            edge.decode_rgb(edge.encode_rgb(rgb, width))
        outcome = "image"
    except SlimcodecError as exc:
        outcome = type(exc).__name__
    except Exception as exc:
        outcome = "UNTYPED " + type(exc).__name__ + ": " + str(exc).splitlines()[0][:150]
    print(json.dumps([outcome, opened[:]]), flush=True)
    opened.clear()
"""

PATHS = ["../canary.onnx", "../../canary.onnx", "/tmp/canary.onnx", "sub/canary.onnx", "..",
         ".", "", "canary\\..\\x.onnx", "\u0000canary"]


def _entries(manifest: dict) -> list[dict]:
    sets = [manifest["graphs"], *(d["graphs"] for d in manifest.get("domains", {}).values())]
    return [g for graphs in sets for per_width in graphs.values() for g in per_width.values()]


def hostile_edit(root: Path, rng: random.Random) -> str:
    """One hostile edit of the bundle at ``root`` (already edited, perhaps); its kind."""
    try:
        manifest = json.loads((root / "manifest.json").read_text())
        entries = _entries(manifest)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return "none"  # an earlier edit broke the manifest: nothing more to forge in it
    graphs = [f for f in root.glob("*.onnx") if f.is_file() and not f.is_symlink()]
    kind = rng.choice(["path", "field", "value", "graph bytes", "tables bytes", "tables edit",
                       "link", "nesting", "json"])
    if kind in ("graph bytes", "link") and not graphs:
        kind = "path"
    if kind == "path":
        rng.choice(entries)["file"] = rng.choice(PATHS)
    elif kind == "field":
        target = rng.choice([manifest, rng.choice(entries)])
        if target:
            target.pop(rng.choice(sorted(target)), None)
    elif kind == "value":
        key = rng.choice(["downsampling", "widths", "fingerprint", "tables_sha256", "latent",
                          "variable_rate", "version", "format"])
        manifest[key] = rng.choice([0, -1, 2**63, "16", None, [], {}, [200000], "x" * 64,
                                    [16, 16], 1e308])
    elif kind == "graph bytes":
        graph = rng.choice(graphs)
        data = bytearray(graph.read_bytes())
        for _ in range(rng.randint(1, 16)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        graph.write_bytes(bytes(data[: rng.randrange(len(data) + 1)]) if rng.random() < 0.3
                          else bytes(data))
    elif kind == "tables bytes":
        tables = root / "entropy.npz"
        data = bytearray(tables.read_bytes())
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        tables.write_bytes(bytes(data))
    elif kind == "tables edit":  # a consistent edit: a valid npz, its checksum now stale
        import numpy as np

        try:
            with np.load(root / "entropy.npz") as npz:
                arrays = dict(npz)
        except Exception:  # an earlier edit damaged the file: nothing to edit consistently
            return "none"
        key = rng.choice(sorted(arrays))
        arrays[key] = arrays[key] + rng.choice([1, -3, 100])
        np.savez(root / "entropy.npz", **arrays)
    elif kind == "link":
        graph = rng.choice(graphs)
        graph.unlink()
        graph.symlink_to(root.parent / "canary.onnx")
    elif kind == "nesting":  # written as text: deeper than json itself can build
        text = json.dumps(manifest).replace('"graphs": {', '"graphs": ' + "[" * 50000 + "]" * 50000
                                            + ', "x": {', 1)
        (root / "manifest.json").write_text(text)
        return kind
    else:
        (root / "manifest.json").write_text(rng.choice(["{", "[]", "null", "\xff", "{}"]))
        return kind
    (root / "manifest.json").write_text(json.dumps(manifest))
    return kind



def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundles", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
    from helpers import sliced_slimcae
    from slimcodec_edge.onnx_export import export_bundle

    rng = random.Random(args.seed)
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    findings, outside = [], 0
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        valid = export_bundle(sliced_slimcae((16, 8)), tmp / "valid", "tiny")
        (tmp / "canary.onnx").write_bytes((valid / "analysis-16.onnx").read_bytes())
        child = Child(CHILD, cwd=Path(__file__).parent.parent)
        for i in range(args.bundles):
            root = tmp / f"b{i}"
            shutil.copytree(valid, root)
            kinds = [hostile_edit(root, rng) for _ in range(rng.randint(1, 3))]
            report = child.ask(root, args.timeout)
            kind = kinds[0]  # the rows count bundles by their first edit
            if isinstance(report, str):
                counts[kind][report] += 1
                findings.append(f"{report} ({kind})")
                child.close()
                child = Child(CHILD, cwd=Path(__file__).parent.parent)
            else:
                outcome, opened = report
                counts[kind][outcome.split(":")[0]] += 1
                outside += bool(opened)
                if outcome.startswith("UNTYPED") or opened:
                    findings.append(f"{outcome} ({kind}) {opened[:2]}")
            shutil.rmtree(root)
        child.close()
    rows, total = outcome_table(dict(sorted(counts.items())))
    outcomes = sorted(total)
    untyped = sum(v for k, v in total.items() if k.startswith("UNTYPED"))
    body = f"""## Fuzzing bundles: {args.bundles} hostile bundles against the edge runtime

Copies of a small valid bundle (widths 16 and 8) with 1-3 hostile edits each (seed
{args.seed}): paths out of the folder or to a canary file beside it, fields deleted or
given hostile values, graphs and tables damaged or consistently edited, links, deep
nesting, broken JSON. Each loaded by `EdgeCodec` in a child process and used to code a
40x56 image at every width.

**{total['crash']} crashes, {total['hang']} hangs, {untyped} untyped errors, {outside}
bundles that opened a file outside their folder.** Wall time {time.time() - t0:.0f} s.

| first edit | bundles | {" | ".join(outcomes)} |
|---|---:|{"---:|" * len(outcomes)}
{chr(10).join(rows)}
"""
    if findings:
        body += "\nFindings:\n\n" + "\n".join(f"- {f}" for f in findings[:20])
    write_section("fuzz_bundles", body)
    print(body)


if __name__ == "__main__":
    main()
