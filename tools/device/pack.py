"""Here, before a lent GPU machine is used: put what it lacks into the ignored folders that
the `device` tool carries (see docs/gpu_training.md).

* ``.whl/``: compressai 1.2.8's cp312 wheel and pytorch-msssim's (the machine has torch,
  torchvision, numpy and compressai's other needs, not these two; ``import compressai``
  loads pytorch_msssim through its losses);
* ``.device/init.pt``: the model the run starts from (``--init``, default the default
  model), its parameters rounded to float16 and stored so (``save_model_file(half=True)``:
  half the file; what the run starts from is then the rounded model, which a training step
  moves by far more than the rounding did);
* ``.device/data/``: the training photos as JPEG 4:4:4, shorter side at most ``--side``.

The working tree that travels (tracked files, plus these) must stay under 64 MiB. The
shipped weights alone are more than that, so none of them travels: set them all aside
before the call (the script prints the command, and counts the tree without them); the run
needs only ``init.pt``. The photos take what is left, at the highest JPEG quality that fits
(the script says which: put it in the model card).

    bash tools/with-venv.sh python tools/device/pack.py [--init slimcae-hpc] \
        [--data ../shared/data/train_photos] [--side 512]
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
from slimcodec.zoo import DEFAULT_MODEL, WEIGHTS_DIR, load_model, model_meta, save_model_file
from slimcodec.zoo.checkpoint import round_to_half

LIMIT = 64 * 2**20
MARGIN = 4 * 2**20  # for files the run itself adds, and the count's own slack
MIN_DATA = 8 * 2**20  # below this, the photos would be too few pixels to train on
WHEELS = {"compressai-1.2.8-cp312-*.whl": "compressai==1.2.8",
          "pytorch_msssim-1.0.0-*.whl": "pytorch-msssim==1.0.0"}


def tracked_bytes(repo: Path) -> int:
    """What travels of the checkout itself, the shipped weights (set aside) not counted."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=repo, capture_output=True, check=True).stdout.split(b"\0")
    aside = {w.resolve() for w in shipped_weights()}
    paths = [(repo / f.decode()).resolve() for f in files if f]
    return sum(p.stat().st_size for p in paths if p.is_file() and p not in aside)


def shipped_weights() -> list[Path]:
    return sorted(WEIGHTS_DIR.glob("*.pt"))


def write_init(init: str, path: Path) -> None:
    """The model a run starts from, its parameters rounded to float16, as a model file."""
    model = load_model(init)
    round_to_half(model)
    meta = {"summary": f"{init}, parameters rounded to float16, to start a training run from",
            "source": str(init), "source_meta": model_meta(init)}
    save_model_file(model, path, meta=meta, half=True)


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
    p.add_argument("--init", default=DEFAULT_MODEL,
                   help="registered name or model file the run starts from (default: %(default)s)")
    args = p.parse_args()
    repo = Path(__file__).resolve().parents[2]
    wheels, device = repo / ".whl", repo / ".device"
    data = device / "data"
    device.mkdir(exist_ok=True)
    write_init(args.init, device / "init.pt")
    for pattern, wheel in WHEELS.items():
        if not list(wheels.glob(pattern)):
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                            "--only-binary=:all:", "--python-version", "3.12", "--implementation",
                            "cp", "--platform", "manylinux_2_34_x86_64", "-d", str(wheels), wheel],
                           check=True)
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
    fixed = tracked_bytes(repo) + sum(f.stat().st_size for f in wheels.iterdir()) + \
        (device / "init.pt").stat().st_size
    budget = LIMIT - MARGIN - fixed
    if budget < MIN_DATA:
        raise SystemExit(f"the checkout, the wheel and init.pt are {fixed / 2**20:.1f} MiB of "
                         f"the {LIMIT / 2**20:.0f} MiB that travel: no room for the photos")
    for quality in (95, 92, 90, 85, 80):
        blobs = encode_all([rgb for _, rgb in images], quality)
        if sum(map(len, blobs)) <= budget:
            break
    else:
        raise SystemExit(f"{len(images)} photos do not fit in {budget / 2**20:.1f} MiB even at "
                         f"quality {quality}: lower --side")
    for (stem, _), blob in zip(images, blobs, strict=True):
        (data / f"{stem}.jpg").write_bytes(blob)
    total = fixed + sum(map(len, blobs))
    print(f"init.pt: {args.init}, float16 parameters, "
          f"{(device / 'init.pt').stat().st_size / 2**20:.1f} MiB")
    print(f"{len(images)} photos, shorter side <= {args.side}, JPEG q{quality} 4:4:4: "
          f"{sum(map(len, blobs)) / 2**20:.1f} MiB; the travelling tree is "
          f"{total / 2**20:.1f} MiB of {LIMIT / 2**20:.0f} with the shipped weights set aside")
    if shipped_weights():
        rel = WEIGHTS_DIR.relative_to(repo)
        print(f"before the call: mkdir -p ../weights-aside && mv {rel}/*.pt ../weights-aside/"
              f"\nafter it:        mv ../weights-aside/*.pt {rel}/")


if __name__ == "__main__":
    main()
