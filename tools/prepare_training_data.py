"""Assemble the training and validation folders for the shipped `slimcae` model.

train: ../shared/data/photos (all but the held-out ones) plus photos bundled in installed
packages (scikit-image, scikit-learn, matplotlib). val: the held-out shared photos, which
the λ-scheduler also uses for its decisions (never for gradients). unseen: photos that neither
training nor the scheduler ever sees (skimage's astronaut, the demo's sample image, and the
left view of its stereo motorcycle), for a check on images nothing was tuned on.

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


def unseen_photos() -> dict[str, np.ndarray]:
    """Natural photos in scikit-image that no training or validation folder includes."""
    import skimage.data as sk

    return {"skimage_astronaut": sk.astronaut(), "skimage_motorcycle": sk.stereo_motorcycle()[0]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared/data")
    ap.add_argument("--out", default="runs/data")
    args = ap.parse_args()
    out = Path(args.out)
    train, val, unseen = out / "train", out / "val", out / "unseen"
    for d in (train, val, unseen):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    shared = sorted((Path(args.shared) / "photos").glob("*.png"))
    for p in shared[: len(shared) - HELD_OUT]:
        shutil.copy(p, train / p.name)
    for p in shared[len(shared) - HELD_OUT :]:
        shutil.copy(p, val / p.name)
    for name, img in package_photos().items():
        Image.fromarray(img).save(train / f"{name}.png")
    try:
        for name, img in unseen_photos().items():
            Image.fromarray(img).save(unseen / f"{name}.png")
    except ImportError:
        print("scikit-image not installed: no unseen photos")
    counts = {d.name: len(list(d.iterdir())) for d in (train, val, unseen)}
    print(", ".join(f"{k}: {v} images" for k, v in counts.items()))


if __name__ == "__main__":
    main()
