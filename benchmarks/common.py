"""Shared by the benchmark scripts: test images, classical codecs, model RD, RESULTS.md."""

from __future__ import annotations

import io
import os
import platform
import re
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from slimcodec.api import codec_for
from slimcodec.domains.screen import render_screen
from slimcodec.evaluate import evaluate
from slimcodec.utils.image import find_images, load_rgb
from slimcodec.utils.metrics import mean_psnr, psnr

RESULTS = Path(__file__).with_name("RESULTS.md")
FIGURES = Path(__file__).with_name("figures")

Point = tuple[float, float]

# Pillow encoders and the quality sweep of each. The sweep is dense at the low end, where
# learned codecs usually operate: a BD-rate is taken over the PSNR range both curves cover,
# so a sweep that starts at quality 5 would leave JPEG's lowest rates out of it. (Quality 1
# is left out: JPEG clamps its tables there, and it codes almost exactly like quality 2.)
QUALITIES = (2, 3, 5, 8, 10, 15, 25, 35, 45, 55, 65, 75, 85, 95)
CLASSICAL = {
    "JPEG 4:2:0": ("JPEG", {"subsampling": 2}, QUALITIES),
    "JPEG 4:4:4": ("JPEG", {"subsampling": 0}, QUALITIES),
    "WebP": ("WEBP", {"method": 6}, QUALITIES),
    "AVIF": ("AVIF", {"speed": 4}, QUALITIES),
}
#: The classical codecs every RD table is measured against, on the same images in the same run.
COMPARED = ("JPEG 4:2:0", "WebP", "AVIF")


def centre_crop(rgb: np.ndarray, crop: tuple[int, int]) -> np.ndarray:
    """The centre ``crop`` = (width, height) of an image at least that large."""
    w, h = crop
    top, left = (rgb.shape[0] - h) // 2, (rgb.shape[1] - w) // 2
    return np.ascontiguousarray(rgb[top : top + h, left : left + w])


def load_test_images(root: str, crop: tuple[int, int] | None) -> list[tuple[str, np.ndarray]]:
    """Images under ``root``, centre-cropped to ``crop`` = (width, height) when given."""
    out = []
    for path in find_images(root):
        rgb, _ = load_rgb(path)
        if crop:
            w, h = crop
            if rgb.shape[0] < h or rgb.shape[1] < w:
                print(f"skipping {path.name}: smaller than {w}x{h}", file=sys.stderr)
                continue
            rgb = centre_crop(rgb, crop)
        out.append((path.name, np.ascontiguousarray(rgb)))
    if not out:
        raise SystemExit(f"no usable test images in {root}")
    return out


def held_out_screens(count: int, crop: tuple[int, int]) -> list[tuple[str, np.ndarray]]:
    """The benchmarks' held-out screens at ``crop`` = (width, height), as (name, image):
    seeds from 1000, which no training run (seeds from 100,000) or adaptation (from 0)
    renders."""
    w, h = crop
    return [(f"screen-{seed}", render_screen(seed, (h, w))) for seed in range(1000, 1000 + count)]


def parse_crop(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def classical_rd(images: Sequence[tuple[str, np.ndarray]], name: str) -> list[Point]:
    """(bpp, PSNR) per quality setting of a Pillow codec, averaged over images."""
    fmt, options, qualities = CLASSICAL[name]
    points = []
    for q in qualities:
        bpps, psnrs = [], []
        for _, rgb in images:
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, fmt, quality=q, **options)
            decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
            bpps.append(8 * len(buf.getvalue()) / (rgb.shape[0] * rgb.shape[1]))
            psnrs.append(psnr(rgb, decoded))
        points.append((float(np.mean(bpps)), mean_psnr(psnrs)))
    return points


def model_rd(model: str, images: Sequence[tuple[str, np.ndarray]]) -> list[dict]:
    """The ``slimcodec eval --scale 1`` points of a model (real container bytes), widest
    first: at the image's own size, where the training objective (:func:`rd_loss`) holds."""
    result = evaluate(codec_for(model), [rgb for _, rgb in images], progress=False, scale=1)
    return result["points"]


def rd_loss(lambdas: Sequence[float], points: Sequence[dict]) -> float:
    """Mean over widths of λ·255²·MSE + bpp, the training objective, from RD points with
    8-bit PSNR (lower is better)."""
    return float(np.mean([lam * 255**2 * 10 ** (-p["psnr"] / 10) + p["bpp"]
                          for lam, p in zip(lambdas, points, strict=True)]))


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section ``name`` of RESULTS.md, stamped with its command."""
    argv = [os.path.relpath(sys.argv[0]), *sys.argv[1:]]
    command = "python " + " ".join(shlex.quote(a) for a in argv)
    stamp = (f"Command: `{command}`  \n"
             f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
             f"{platform.machine()}, {os.cpu_count()} CPU cores, "
             f"Python {platform.python_version()}.")
    section = f"<!-- begin {name} -->\n{body.strip()}\n\n{stamp}\n<!-- end {name} -->"
    text = RESULTS.read_text() if RESULTS.exists() else (
        "# Benchmark results\n\nWritten by the scripts in `benchmarks/`; every figure below "
        "comes with the command that produced it. Re-run a command to refresh its section.\n")
    pattern = re.compile(rf"<!-- begin {re.escape(name)} -->.*?<!-- end {re.escape(name)} -->",
                         re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else (
        text.rstrip() + "\n\n" + section + "\n")
    RESULTS.write_text(text)


def table_head(columns: Sequence[str]) -> str:
    """A markdown table's header and alignment rows (first column left, the rest right)."""
    return ("| " + " | ".join(columns) + " |\n|---|" + "---:|" * (len(columns) - 1))


def fmt(value: float | None, spec: str = ".1f", suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def plot_curves(curves: dict[str, list[Point]], path: Path, title: str) -> None:
    """One RD plot of several labelled point sets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 5))
    for label, pts in curves.items():
        ax.plot(*zip(*sorted(pts), strict=True), marker="o", label=label)
    ax.set(xlabel="bits per pixel", ylabel="PSNR (dB, RGB)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


class Child:
    """A fuzzer's child process: Python ``code`` run with ``args``, reading one path a line
    on standard input and answering one JSON line each. A dead child (a crash) or a silent
    one (a hang, past ``timeout``) is reported as such; the caller then starts another."""

    def __init__(self, code: str, *args: str, cwd: str | os.PathLike | None = None) -> None:
        import selectors
        import subprocess

        self.proc = subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, bufsize=1, cwd=cwd)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)

    def ask(self, path: str | os.PathLike, timeout: float) -> list | str:
        """The child's report for ``path``, or "crash" / "hang"."""
        import json

        try:
            self.proc.stdin.write(f"{path}\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return "crash"
        if not self.sel.select(timeout):
            self.proc.kill()
            return "hang"
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            return "crash"
        return json.loads(line)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def outcome_table(counts: dict) -> tuple[list[str], dict]:
    """A fuzzer's markdown rows, one per kind of input and an **all** row, with a column
    per outcome; and the totals by outcome. ``counts``: kind -> Counter of outcomes."""
    import collections

    total: collections.Counter = collections.Counter()
    for c in counts.values():
        total.update(c)
    outcomes = sorted(total)
    rows = [f"| {kind} | {sum(c.values())} | " + " | ".join(str(c[o]) for o in outcomes) + " |"
            for kind, c in counts.items()]
    rows.append(f"| **all** | {sum(total.values())} | "
                + " | ".join(str(total[o]) for o in outcomes) + " |")
    return rows, total
