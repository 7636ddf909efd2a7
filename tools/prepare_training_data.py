"""Assemble the training and validation folders for the shipped `slimcae` model.

train: ../shared/data/photos (all but the held-out ones) plus photos bundled in installed
packages (scikit-image, scikit-learn, matplotlib). val: the held-out shared photos.
The demo's sample image (skimage's astronaut) is kept out of both.

Usage: python tools/prepare_training_data.py [--shared ../shared/data] [--out runs/data]
"""

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

HELD_OUT = 3  # the last N shared photos, sorted by name, go to validation


def package_photos() -> dict[str, np.ndarray]:
    """Photos bundled in installed packages; a package that is missing is skipped."""
    photos: dict[str, np.ndarray] = {}
    try:
        import skimage.data as sk

        photos.update({f"skimage_{n}": getattr(sk, n)() for n in ("coffee", "chelsea", "rocket")})
    except ImportError:
        print("scikit-image not installed: its photos skipped")
    try:
        from sklearn.datasets import load_sample_images

        for name, img in zip(("china", "flower"), load_sample_images().images, strict=True):
            photos[f"sklearn_{name}"] = img
    except ImportError:
        print("scikit-learn not installed: its photos skipped")
    try:
        from matplotlib import cbook

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            photos["mpl_grace_hopper"] = np.asarray(Image.open(f).convert("RGB"))
    except ImportError:
        print("matplotlib not installed: its photo skipped")
    return photos


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared/data")
    ap.add_argument("--out", default="runs/data")
    args = ap.parse_args()
    out = Path(args.out)
    train, val = out / "train", out / "val"
    for d in (train, val):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    shared = sorted((Path(args.shared) / "photos").glob("*.png"))
    for p in shared[: len(shared) - HELD_OUT]:
        shutil.copy(p, train / p.name)
    for p in shared[len(shared) - HELD_OUT :]:
        shutil.copy(p, val / p.name)
    for name, img in package_photos().items():
        Image.fromarray(img).save(train / f"{name}.png")
    print(f"train: {len(list(train.iterdir()))} images, val: {len(list(val.iterdir()))} images")


if __name__ == "__main__":
    main()
