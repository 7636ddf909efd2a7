"""The edge runtime installed alone, without torch, in a fresh virtual environment: it must
install, encode and decode, and this reports its size against the full environment's.

Builds a venv, installs `export/requirements-edge.txt` and this package with `--no-deps`
(the documented edge install, export/README.md), runs `slimcodec-edge encode` and `decode`
with a bundle exported here, and measures both environments' installed size (`du`). Needs
the package index once, for the venv's packages.

    python benchmarks/edge_install.py [--work /tmp/slimcodec-edge-install]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from common import write_section

from export.onnx_export import export_bundle
from slimcodec.cli import sample_image
from slimcodec.zoo import load_model

ROOT = Path(__file__).resolve().parent.parent


def du(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/slimcodec-edge-install")
    args = p.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
           "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(ROOT / "export" / "requirements-edge.txt")], check=True)
    subprocess.run([*pip, "--no-deps", str(ROOT)], check=True)
    bundle = export_bundle(load_model("slimcae"), work / "bundle", "slimcae")
    edge = str(venv / "bin" / "slimcodec-edge")
    subprocess.run([edge, "encode", str(bundle), str(sample_image()), "-o",
                    str(work / "x.slc"), "--width", "96"], check=True, cwd=work)
    subprocess.run([edge, "decode", str(bundle), str(work / "x.slc"), "-o",
                    str(work / "x.png")], check=True, cwd=work)
    probe = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import importlib.util as u; print(u.find_spec('torch') is None)"],
                           capture_output=True, text=True, check=True).stdout.strip()
    edge_size = du(venv)
    full = Path(sysconfig.get_paths()["purelib"]).parent.parent.parent  # this environment
    full_size = du(full)
    bundle_size = du(bundle)
    body = f"""## Edge runtime: installed alone, without torch

A fresh virtual environment with `export/requirements-edge.txt` (numpy, onnxruntime, Pillow)
and the package installed `--no-deps`: `slimcodec-edge encode` and `decode` ran with a
bundle of the shipped `slimcae`; torch absent from that environment: {probe}.

| environment | installed size |
|---|---:|
| edge runtime (venv, Python included) | **{edge_size / 2**20:.0f} MiB** |
| full slimcodec environment (torch stack) | {full_size / 2**20:.0f} MiB |
| `slimcae` bundle, all 5 widths, float | {bundle_size / 2**20:.1f} MiB |

The edge environment is {edge_size / full_size:.1%} of the full one."""
    write_section("edge_install", body)
    print(body)


if __name__ == "__main__":
    main()
