"""The built wheel's size, against the 50 MB a package index accepts for one file by default.

Builds the wheel of this checkout (`pip wheel --no-deps --no-build-isolation`, in a
temporary folder), and lists its largest members. Writes the RESULTS.md section
``wheel-size``; exits 1 when the wheel is over the limit.

    python benchmarks/wheel_size.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from common import write_section

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
            if (ROOT / name).is_file():
                shutil.copy2(ROOT / name, target)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                        "--no-build-isolation", "-q", "-w", str(Path(tmp) / "dist"), str(src)],
                       check=True)
        wheel = next((Path(tmp) / "dist").glob("*.whl"))
        size = wheel.stat().st_size
        with zipfile.ZipFile(wheel) as z:
            members = sorted(z.infolist(), key=lambda i: -i.compress_size)[:6]
            rows = [f"| `{m.filename}` | {m.file_size / 1e6:.1f} MB | "
                    f"{m.compress_size / 1e6:.1f} MB |" for m in members]
    verdict = "within" if size <= LIMIT else "OVER"
    body = (f"## Wheel size\n\n`{wheel.name}`: **{size / 1e6:.1f} MB**, {verdict} the 50 MB "
            "limit.\n\n| largest members | size | in the wheel |\n|---|---:|---:|\n"
            + "\n".join(rows))
    write_section("wheel-size", body)
    print(body)
    sys.exit(0 if size <= LIMIT else 1)


if __name__ == "__main__":
    main()
