"""The edge runtime installed alone, without torch, in a fresh virtual environment: it must
install, encode and decode, and this reports its size against the full environment's.

Builds a venv, runs the documented edge install (`pip install ./edge`, pinned by
`export/requirements-edge.txt`), runs `slimcodec-edge encode --target-bpp` and `decode` with a
bundle exported here, lists what it installed (no torch, no `.pt` file) and measures both
environments' installed size (`du`). Needs the package index once, for the venv's packages.

    python benchmarks/edge_install.py [--work /tmp/slimcodec-edge-install]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from common import write_section
from slimcodec_edge.onnx_export import export_bundle

from slimcodec.cli import sample_image
from slimcodec.zoo import DEFAULT_MODEL, load_model

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
    shutil.copytree(ROOT / "edge", work / "edge",
                    ignore=shutil.ignore_patterns("_stage", "build", "*.egg-info"))
    subprocess.run([*pip, "-c", str(ROOT / "export" / "requirements-edge.txt"),
                    str(work / "edge")], check=True, env={**os.environ,
                                                           "SLIMCODEC_SOURCE": str(ROOT)})
    model = DEFAULT_MODEL
    bundle = export_bundle(load_model(model), work / "bundle", model)
    edge = str(venv / "bin" / "slimcodec-edge")
    encoded = subprocess.run([edge, "encode", str(bundle), str(sample_image()), "-o",
                              str(work / "x.slc"), "--target-bpp", "0.3"], check=True,
                             cwd=work, capture_output=True, text=True).stdout.strip()
    subprocess.run([edge, "decode", str(bundle), str(work / "x.slc"), "-o",
                    str(work / "x.png")], check=True, cwd=work)
    probe = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import importlib.util as u; print(u.find_spec('torch') is None)"],
                           capture_output=True, text=True, check=True).stdout.strip()
    files = [p for p in venv.rglob("*") if p.is_file()]
    # Weights: PyTorch files (a .pth may also be a small text file of import paths).
    weights = [p for p in files if p.suffix == ".pt" or (p.suffix == ".pth"
                                                         and p.stat().st_size > 65536)]
    site = next(venv.glob("lib/python*/site-packages"))
    torch_files = [p for p in site.iterdir() if p.name.split("-")[0].lower() in
                   ("torch", "torchvision", "compressai", "fvcore")]
    if weights or torch_files:
        raise SystemExit(f"the edge install holds weights {weights[:3]} and torch "
                         f"packages {torch_files[:3]}")
    edge_size = du(venv)
    full = Path(sysconfig.get_paths()["purelib"]).parent.parent.parent  # this environment
    full_size = du(full)
    bundle_size = du(bundle)
    body = f"""## Edge runtime: installed alone, without torch

`python benchmarks/edge_install.py`: a fresh virtual environment, then `pip install ./edge`
(the `slimcodec-edge` distribution: numpy, onnxruntime and Pillow, pinned by
`export/requirements-edge.txt`); `slimcodec-edge encode --target-bpp 0.3` and `decode` ran
with a bundle of the default `{model}` (`{encoded}`). Torch absent from that environment:
{probe}; files installed: {len(files):,}, of which PyTorch weight files: {len(weights)};
torch, torchvision, compressai or fvcore packages: {len(torch_files)}.

| environment | installed size |
|---|---:|
| edge runtime (venv, Python included) | **{edge_size / 2**20:.0f} MiB** |
| full slimcodec environment (torch stack) | {full_size / 2**20:.0f} MiB |
| `{model}` bundle, all 5 widths, float | {bundle_size / 2**20:.1f} MiB |

The edge environment is {edge_size / full_size:.1%} of the full one."""
    write_section("edge_install", body)
    print(body)


if __name__ == "__main__":
    main()
