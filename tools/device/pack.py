"""Here, before a lent GPU machine is used: put what it lacks into the ignored folders that
the `device` tool carries (see docs/gpu_training.md).

* ``.whl/``: compressai 1.2.8's cp312 wheel (the machine has torch, torchvision and numpy,
  not compressai);
* ``.device/data/``: the training photos as JPEG 4:4:4, shorter side at most ``--side``.

The working tree that travels (tracked files, plus these) must stay under 64 MiB; the
tracked weights already take most of it (with four models shipped, more than all of it: the
script then says which to set aside), so the script shrinks the photos' quality until
everything fits, and says what it chose.

    bash tools/with-venv.sh python tools/device/pack.py [--data ../shared/data/train_photos]
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from slimcodec.utils.image import find_images, load_rgb

LIMIT = 64 * 2**20
MARGIN = 4 * 2**20  # for files the run itself adds, and the count's own slack
MIN_DATA = 8 * 2**20  # below this, the photos would be too few pixels to train on
WHEEL = "compressai==1.2.8"


def tracked_bytes(repo: Path) -> int:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=repo, capture_output=True, check=True).stdout.split(b"\0")
    return sum((repo / f.decode()).stat().st_size for f in files
               if f and (repo / f.decode()).is_file())


def encode_all(images: list, quality: int) -> list[bytes]:
    out = []
    for rgb in images:
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "JPEG", quality=quality, subsampling=0)
        out.append(buf.getvalue())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/train_photos"))
    p.add_argument("--side", type=int, default=512, help="shorter side at most (pixels)")
    args = p.parse_args()
    repo = Path(__file__).resolve().parents[2]
    wheels, data = repo / ".whl", repo / ".device" / "data"
    tracked = tracked_bytes(repo)
    if LIMIT - MARGIN - tracked < MIN_DATA:
        raise SystemExit(
            f"the checkout alone is {tracked / 2**20:.1f} MiB of the {LIMIT / 2**20:.0f} MiB "
            "that travel: move the shipped weights the run does not start from out of it "
            "(for a run from slimcae-hp: mkdir -p ../weights-aside && mv "
            "slimcodec/zoo/weights/{slimcae,slimcae-vr5,slimcae-hp2}.pt ../weights-aside/), "
            "run this again, and move them back after the last device call "
            "(docs/gpu_training.md, step 1)")
    if not list(wheels.glob("compressai-1.2.8-cp312-*.whl")):
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.12", "--implementation", "cp", "--platform",
                        "manylinux_2_34_x86_64", "-d", str(wheels), WHEEL], check=True)
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    images = []
    for path in find_images(args.data):
        rgb, _ = load_rgb(path)
        img = Image.fromarray(rgb)
        scale = args.side / min(img.size)
        if scale < 1:
            img = img.resize((round(img.width * scale), round(img.height * scale)),
                             Image.Resampling.LANCZOS)
        images.append((path.stem, np.asarray(img)))
    budget = LIMIT - MARGIN - tracked
    for quality in (95, 92, 90, 85, 80):
        blobs = encode_all([rgb for _, rgb in images], quality)
        if sum(map(len, blobs)) <= budget:
            break
    else:
        raise SystemExit(f"{len(images)} photos do not fit in {budget / 2**20:.1f} MiB even at "
                         f"quality {quality}: lower --side")
    for (stem, _), blob in zip(images, blobs, strict=True):
        (data / f"{stem}.jpg").write_bytes(blob)
    total = tracked + sum(f.stat().st_size for folder in (wheels, data)
                                      for f in folder.iterdir())
    print(f"{len(images)} photos, shorter side <= {args.side}, JPEG q{quality} 4:4:4: "
          f"{sum(map(len, blobs)) / 2**20:.1f} MiB; the travelling tree is "
          f"{total / 2**20:.1f} MiB of {LIMIT / 2**20:.0f}")


if __name__ == "__main__":
    main()
