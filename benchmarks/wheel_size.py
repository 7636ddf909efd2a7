"""The built wheels' sizes, against the 50 MB a package index accepts for one file by default.

Builds the wheels of this checkout (`pip wheel --no-deps --no-build-isolation`, in a
temporary folder): `slimcodec` (the code and the default model's weights), the models
distributions (`models/`, `models-hp/`, `models-hpc/`: the other shipped models' weights) and
`slimcodec-edge` (`edge/`: the edge runtime alone), and lists their largest members.
Writes the RESULTS.md section ``wheel-size``; exits 1 when a wheel is over the limit.

    python benchmarks/wheel_size.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from common import write_section

from slimcodec.zoo.catalog import MODELS_DISTRIBUTIONS, distribution_folder

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 50 * 10**6


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # a copy of the tracked tree: the build writes build/ and *.egg-info beside the sources
        src = Path(tmp) / "src"
        files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                               check=True).stdout.decode().split("\0")
        for name in filter(None, files):
            target = src / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if (ROOT / name).is_file():  # a link (models-hp/setup.py) copied as its file
                shutil.copy2(ROOT / name, target)
        rows, sizes = [], {}
        models = [src / distribution_folder(d) for d in MODELS_DISTRIBUTIONS]
        for project in (src, *models, src / "edge"):
            subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "-q", "-w", str(Path(tmp) / "dist"),
                            str(project)], check=True, env={**os.environ,
                                                            "SLIMCODEC_SOURCE": str(src)})
        for wheel in sorted((Path(tmp) / "dist").glob("*.whl")):
            sizes[wheel.name] = wheel.stat().st_size
            with zipfile.ZipFile(wheel) as z:
                members = sorted(z.infolist(), key=lambda i: -i.compress_size)[:4]
                rows += [f"| `{wheel.name.split('-')[0]}` | `{m.filename}` | "
                         f"{m.file_size / 1e6:.1f} MB | {m.compress_size / 1e6:.1f} MB |"
                         for m in members]
    over = [name for name, size in sizes.items() if size > LIMIT]
    lines = "\n".join(f"- `{name}`: **{size / 1e6:.1f} MB**, "
                      f"{'OVER' if size > LIMIT else 'within'} the 50 MB limit"
                      for name, size in sizes.items())
    body = (f"## Wheel size\n\n`python benchmarks/wheel_size.py`:\n\n{lines}\n\n"
            "| wheel | largest members | size | in the wheel |\n|---|---|---:|---:|\n"
            + "\n".join(rows))
    write_section("wheel-size", body)
    print(body)
    sys.exit(1 if over else 0)


if __name__ == "__main__":
    main()
